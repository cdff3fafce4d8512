// The pure parts of deciding from state: LSN order, durability reasons, and filing LakeTS's text
// with the item it names (evidence only).
import { describe, expect, it } from 'vitest';
import { noticesNaming } from '../../lib/jobs/notices.ts';
import { compareLsn, notDurableReason, type ShadowState } from '../../lib/jobs/sync-state.ts';

describe('compareLsn', () => {
  it('orders by the high word, then the low word, as numbers not text', () => {
    expect(compareLsn('0/FFFFFFFF', '1/0')).toBe(-1);
    expect(compareLsn('0/C24EAC8', '0/C378D20')).toBe(-1);
    expect(compareLsn('0/9', '0/10')).toBe(-1);
    expect(compareLsn('A/0', '9/FFFFFFFF')).toBe(1);
    expect(compareLsn('16/b374d848', '16/B374D848')).toBe(0);
  });

  it('refuses what is not a pg_lsn', () => {
    expect(() => compareLsn('0/G', '0/0')).toThrow('not a pg_lsn: "0/G"');
  });
});

describe('notDurableReason', () => {
  const streaming: ShadowState = { committed: '0/200', reason: null, unreadable: false };
  it('is NULL only when Sync committed at or past the chunk last write', () => {
    expect(notDurableReason(streaming, '0/200')).toBeNull();
    expect(notDurableReason(streaming, '0/1FF')).toBeNull();
    expect(notDurableReason(streaming, '0/201')).toBe(
      "committed_lsn 0/200 is behind the chunk's last_write_lsn 0/201 (Lakehouse Sync has not caught up)",
    );
    expect(notDurableReason(streaming, null)).toBe(
      'the chunk has no last_write_lsn (no recorded write position)',
    );
    const blind: ShadowState = {
      committed: null,
      reason: 'role x lacks USAGE on schema wal2delta',
      unreadable: true,
    };
    expect(notDurableReason(blind, '0/1')).toBe('role x lacks USAGE on schema wal2delta');
  });
});

describe('noticesNaming', () => {
  it('files a notice with the chunk it names as a whole word only', () => {
    const notices = [
      'execute_retention: public.m_10 deferred — not yet durable in UC (pass p_force => TRUE to drop anyway)',
      'WARNING: Failed to drop chunk public.m_1: cannot drop table public.m_1 because other objects depend on it',
      'lakets: something about public.m_100x',
    ];
    expect(noticesNaming(notices, 'public.m_1')).toEqual([notices[1]]);
    expect(noticesNaming(notices, 'public.m_10')).toEqual([notices[0]]);
    expect(noticesNaming(notices, 'public.m_100')).toEqual([]);
  });
});
