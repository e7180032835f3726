/*-------------------------------------------------------------------------
 *
 * snapshot_file.h
 *		Serialized snapshots in pg_logical/snapshots: naming, reading,
 *		checking and installing them.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_FILE_H
#define SNAPSHOT_FILE_H

#include "access/xlogdefs.h"

extern void snapshot_file_path(char *path, XLogRecPtr lsn);
extern bool snapshot_file_exists(XLogRecPtr lsn);
extern bytea *snapshot_file_read(XLogRecPtr lsn);
extern bool snapshot_data_check(const char *data, Size len,
								char *problem, Size problemlen);
extern void snapshot_file_install(XLogRecPtr lsn, const char *data, Size len);

#endif							/* SNAPSHOT_FILE_H */
