-- Only roles granted EXECUTE (see `npm run grants`) may call LakeTS functions. Trigger functions
-- still fire for every writer: Postgres does not check EXECUTE when a trigger fires.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets FROM PUBLIC;
