/*-------------------------------------------------------------------------
 *
 * sync_checks.c
 *		What slot synchronization requires of the standby and of its
 *		primary, and the complaints a DBA reads when something is missing.
 *
 * The requirements and their messages are PostgreSQL 17's, in its order
 * (see ValidateSlotSyncParams() and the worker's check of the primary), so
 * that a DBA who knows core's messages recognises ours.  A complaint is
 * built here and raised or logged by the caller: the manual function raises
 * it as an ERROR, the worker logs it (rate-limited) and retries.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "replication/walreceiver.h"
#include "slot_sync.h"

void
sync_complain(SyncComplaint *c, int sqlerrcode, const char *hint,
			  const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, args);
	va_end(args);
	strlcpy(c->hint, hint ? hint : "", sizeof(c->hint));
	c->detail[0] = '\0';
	c->sqlerrcode = sqlerrcode;
}

/*
 * The standby's own requirements, in core's order and words.
 */
bool
slot_sync_validate_local(SyncComplaint *c)
{
	const char *conninfo = slot_sync_conninfo();
	bool		own_conninfo = pg_slotsync_primary_conninfo != NULL &&
		pg_slotsync_primary_conninfo[0] != '\0';

	if (wal_level < WAL_LEVEL_LOGICAL)
	{
		sync_complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
					  "Set \"wal_level\" to \"logical\" on the standby and restart it.",
					  "replication slot synchronization requires \"wal_level\" >= \"logical\"");
		return false;
	}
	if (PrimarySlotName == NULL || PrimarySlotName[0] == '\0')
	{
		sync_complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
					  "Set \"primary_slot_name\" to the physical replication slot this standby uses on the primary.",
					  "replication slot synchronization requires \"primary_slot_name\" to be set");
		return false;
	}
	if (!hot_standby_feedback)
	{
		sync_complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
					  "Enable \"hot_standby_feedback\": it keeps the catalog rows that synchronized slots need on the primary.",
					  "replication slot synchronization requires \"hot_standby_feedback\" to be enabled");
		return false;
	}
	if (conninfo == NULL || conninfo[0] == '\0')
	{
		sync_complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
					  "Set \"primary_conninfo\", or \"pg_slotsync.primary_conninfo\".",
					  "replication slot synchronization requires \"primary_conninfo\" to be set");
		return false;
	}
	if (slot_sync_dbname() == NULL)
	{
		sync_complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
					  own_conninfo ?
					  "Add a dbname naming a database where pg_slotsync is installed to \"pg_slotsync.primary_conninfo\"." :
					  "Set \"pg_slotsync.primary_dbname\" to a database where pg_slotsync is installed, or add a dbname to \"primary_conninfo\".",
					  "replication slot synchronization requires \"dbname\" to be specified in \"%s\"",
					  own_conninfo ? "pg_slotsync.primary_conninfo" : "primary_conninfo");
		return false;
	}
	return true;
}

/*
 * What the primary reported about itself and our physical slot.
 */
bool
slot_sync_validate_primary(const PrimaryInfo *info, SyncComplaint *c)
{
	if (info->in_recovery)
	{
		sync_complain(c, ERRCODE_FEATURE_NOT_SUPPORTED,
					  "Point \"primary_conninfo\" at the primary server; cascading standbys are not supported yet.",
					  "cannot synchronize replication slots from a standby server");
		return false;
	}
	if (!info->wal_level_logical)
	{
		sync_complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
					  "Set \"wal_level\" to \"logical\" on the primary.",
					  "replication slot synchronization requires \"wal_level\" >= \"logical\" on the primary");
		return false;
	}
	if (!info->standby_slot_exists)
	{
		sync_complain(c, ERRCODE_UNDEFINED_OBJECT,
					  "Check if \"primary_slot_name\" is configured correctly.",
					  "replication slot \"%s\" specified by \"primary_slot_name\" does not exist on primary server",
					  PrimarySlotName);
		return false;
	}
	if (!info->standby_slot_is_physical)
	{
		sync_complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
					  "Check if \"primary_slot_name\" is configured correctly.",
					  "replication slot \"%s\" specified by \"primary_slot_name\" is not a physical slot on primary server",
					  PrimarySlotName);
		return false;
	}
	return true;
}

/*
 * Turn a failed remote call ("what": connect, fetch, ...) into a complaint
 * a DBA can act on.
 */
void
slot_sync_complain_remote(SyncComplaint *c, RemoteFailure failure,
						  const char *what, const char *message)
{
	char	   *dbname = slot_sync_dbname();

	switch (failure)
	{
		case REMOTE_NOT_INSTALLED:
			sync_complain(c, ERRCODE_UNDEFINED_OBJECT,
						  "Run CREATE EXTENSION pg_slotsync in that database on the primary.",
						  "pg_slotsync is not installed in database \"%s\" on the primary server",
						  dbname ? dbname : "");
			break;
		case REMOTE_OLD_VERSION:
			sync_complain(c, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "Run ALTER EXTENSION pg_slotsync UPDATE in that database on the primary.",
						  "pg_slotsync in database \"%s\" on the primary server is version %s, but this standby needs version %s",
						  dbname ? dbname : "", message,
						  SLOT_SYNC_PRIMARY_EXTVERSION);
			break;
		case REMOTE_NO_PRIVILEGE:
			sync_complain(c, ERRCODE_INSUFFICIENT_PRIVILEGE,
						  "The user in the connection string needs the REPLICATION attribute.",
						  "could not %s: %s", what, message);
			break;
		default:
			sync_complain(c, ERRCODE_CONNECTION_FAILURE, NULL,
						  "could not %s: %s", what, message);
			break;
	}
}
