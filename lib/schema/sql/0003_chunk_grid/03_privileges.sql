REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets FROM PUBLIC;
-- Dashboards and ad-hoc queries bucket with it; it touches no data.
GRANT EXECUTE ON FUNCTION lakets.time_bucket(interval, timestamptz) TO PUBLIC;
