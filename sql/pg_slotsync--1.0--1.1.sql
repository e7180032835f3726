/* pg_slotsync--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_slotsync UPDATE TO '1.1'" to load this file. \quit

-- Objects added or changed in 1.1.  Every change here is mirrored in
-- pg_slotsync--1.1.sql; test/sql/upgrade.sql checks that an updated
-- installation has exactly the objects of a fresh one.
