-- Where the extension is registered and where its objects live, as
-- docs/production.md and docs/reference.md say: PostgreSQL 15 cannot register
-- an extension in the pg_-prefixed schema its script creates, so \dx shows
-- the schema CREATE EXTENSION was given (public by default), which holds
-- nothing of it; SCHEMA pg_slotsync fails, as the schema does not exist yet.
DROP EXTENSION IF EXISTS pg_slotsync;

CREATE EXTENSION pg_slotsync SCHEMA pg_slotsync;

CREATE EXTENSION pg_slotsync;
SELECT n.nspname AS registered_in
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_slotsync';

-- every member object is in schema pg_slotsync (or is that schema)
SELECT count(*) > 0 AS has_members,
       bool_and(coalesce(p.pronamespace, c.relnamespace, ns.oid)
                = 'pg_slotsync'::regnamespace) AS all_in_pg_slotsync
FROM pg_depend d
LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
LEFT JOIN pg_namespace ns ON d.classid = 'pg_namespace'::regclass AND ns.oid = d.objid
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_slotsync');

-- nothing of it in the schema it is registered in
SELECT count(*) AS objects_in_public
FROM pg_depend d
JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND p.pronamespace = 'public'::regnamespace;

-- another existing schema is accepted, and holds nothing either
CREATE SCHEMA elsewhere;
DROP EXTENSION pg_slotsync;
CREATE EXTENSION pg_slotsync SCHEMA elsewhere;
SELECT n.nspname AS registered_in,
       (SELECT count(*) FROM pg_proc WHERE pronamespace = n.oid) AS functions_there,
       (SELECT count(*) FROM pg_proc WHERE pronamespace = 'pg_slotsync'::regnamespace) > 0
         AS functions_in_pg_slotsync
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_slotsync';
DROP EXTENSION pg_slotsync;
DROP SCHEMA elsewhere;
CREATE EXTENSION pg_slotsync;
