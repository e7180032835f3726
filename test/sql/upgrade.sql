-- Upgrade path: an installation updated from 1.0 has exactly the objects,
-- signatures, view definitions and privileges of a fresh installation of
-- the current version.
DROP EXTENSION pg_slotsync;

CREATE FUNCTION slotsync_objects()
RETURNS TABLE (kind text, descr text)
LANGUAGE sql AS $$
  SELECT 'object', pg_describe_object(classid, objid, objsubid)
  FROM pg_depend
  WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
    AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_slotsync')
  UNION ALL
  SELECT 'function', p.oid::regprocedure::text || ' -> ' ||
         pg_get_function_result(p.oid) || ' ' || p.provolatile::text ||
         coalesce(' ' || array_to_string(p.proconfig, ','), '') ||
         coalesce(' acl ' || p.proacl::text, '') || ' src ' || p.prosrc
  FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'pg_slotsync')
  UNION ALL
  SELECT 'view', c.relname || ': ' || pg_get_viewdef(c.oid) ||
         coalesce(' acl ' || c.relacl::text, '')
  FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'pg_slotsync')
  UNION ALL
  SELECT 'schema acl', coalesce(nspacl::text, '')
  FROM pg_namespace WHERE nspname = 'pg_slotsync'
$$;

CREATE EXTENSION pg_slotsync VERSION '1.0';
ALTER EXTENSION pg_slotsync UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_slotsync';
CREATE TEMP TABLE updated AS SELECT * FROM slotsync_objects();

DROP EXTENSION pg_slotsync;
CREATE EXTENSION pg_slotsync;
CREATE TEMP TABLE fresh AS SELECT * FROM slotsync_objects();

-- both directions: nothing missing, nothing extra
(SELECT 'only after update' AS side, * FROM updated EXCEPT SELECT 'only after update', * FROM fresh)
UNION ALL
(SELECT 'only when fresh', * FROM fresh EXCEPT SELECT 'only when fresh', * FROM updated)
ORDER BY 1, 2, 3;
SELECT count(*) > 0 AS has_objects FROM fresh;
DROP FUNCTION slotsync_objects();
