// The one rule that keeps an error message on one log line. CloudWatch, terminals and log viewers
// break lines on CR/LF and also on U+0085, U+2028 and U+2029 (which JSON.stringify leaves as they are).

const MAX_LENGTH = 700;

/**
 * `text` as one line: a line break with the blanks around it becomes one space (prose from Postgres or
 * an HTTP body); U+0085/U+2028/U+2029, invisible and usually inside echoed input, are shown escaped as
 * `\u2028`; at most `maxLength` characters.
 */
export function oneLine(text: string, maxLength = MAX_LENGTH): string {
  const flat = text
    .replace(/\s*[\r\n]+\s*/g, ' ')
    .replace(/[\u0085\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    .trim();
  return flat.length > maxLength ? `${flat.slice(0, maxLength - 3)}...` : flat;
}
