/*-------------------------------------------------------------------------
 *
 * remote_values.c
 *		The values of a reply from the primary, parsed strictly.
 *
 * A row taker (see remote_reply.c) reads each value it uses through one of
 * these, never with atoi() or a type's input function: those accept more
 * than the server prints (leading blanks, signs, trailing junk) or throw an
 * ERROR from inside the reply loop.  Each accepts exactly the text the
 * primary's type output function produces for a value that can occur
 * there, and otherwise returns false with a message naming the column and
 * the row and quoting the value, escaped and cut short.
 *
 * Names get more than syntax: a slot name must be one core could have made
 * (1 to 63 of [a-z0-9_]; no path, no format directive, nothing the name
 * type would cut down to some other slot's name), an output plugin name
 * must not read as a library path (it is loaded when the copy is decoded
 * after promotion), a database name must be a name in this server's
 * encoding without control characters.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "mb/pg_wchar.h"
#include "remote_reply.h"
#include "utils/builtins.h"

/* Longest piece of a bad value quoted in a message. */
#define QUOTE_MAX 200

static const char *
column_name(const ReplyRow *row, int col)
{
	return row->statement->columns[col].name;
}

/* "column "x" of row n is not a valid <kind>: "<value>"" */
static bool
bad_value(const ReplyRow *row, int col, const char *kind)
{
	appendStringInfo(row->err, "column \"%s\" of row %d is not a valid %s: \"",
					 column_name(row, col), row->rowno, kind);
	append_remote_text(row->err, PQgetvalue(row->res, row->tuple, col),
					   QUOTE_MAX);
	appendStringInfoChar(row->err, '"');
	return false;
}

bool
reply_isnull(const ReplyRow *row, int col)
{
	return PQgetisnull(row->res, row->tuple, col);
}

static const char *
value(const ReplyRow *row, int col)
{
	return PQgetvalue(row->res, row->tuple, col);
}

/* 1 to 8 hex digits; advances *s past them */
static bool
parse_hex32(const char **s, uint32 *out)
{
	uint64		v = 0;
	int			n = 0;

	while (isxdigit((unsigned char) **s))
	{
		char		c = **s;

		if (++n > 8)
			return false;
		v = v * 16 + (isdigit((unsigned char) c) ? c - '0' :
					  (pg_tolower((unsigned char) c) - 'a' + 10));
		(*s)++;
	}
	*out = (uint32) v;
	return n > 0;
}

/* An LSN as pg_lsn prints it; NULL reads as invalid, 0/0 is refused. */
bool
reply_lsn(const ReplyRow *row, int col, XLogRecPtr *lsn)
{
	const char *s = value(row, col);
	uint32		hi;
	uint32		lo;

	*lsn = InvalidXLogRecPtr;
	if (reply_isnull(row, col))
		return true;
	if (!parse_hex32(&s, &hi) || *s++ != '/' || !parse_hex32(&s, &lo) ||
		*s != '\0' || (hi == 0 && lo == 0))
		return bad_value(row, col, "LSN");
	*lsn = ((uint64) hi << 32) | lo;
	return true;
}

/* Decimal digits only, no sign, no leading junk; fits in *out's range. */
static bool
parse_decimal(const char *s, uint64 max, uint64 *out)
{
	uint64		v = 0;

	if (*s == '\0' || strlen(s) > 20)
		return false;
	for (; *s; s++)
	{
		if (!isdigit((unsigned char) *s))
			return false;
		if (v > (max - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return true;
}

/* An xid; NULL reads as invalid, and a value must be a normal xid. */
bool
reply_xid(const ReplyRow *row, int col, TransactionId *xid)
{
	uint64		v;

	*xid = InvalidTransactionId;
	if (reply_isnull(row, col))
		return true;
	if (!parse_decimal(value(row, col), PG_UINT32_MAX, &v) ||
		!TransactionIdIsNormal((TransactionId) v))
		return bad_value(row, col, "xid");
	*xid = (TransactionId) v;
	return true;
}

bool
reply_int64(const ReplyRow *row, int col, int64 *out)
{
	const char *s = value(row, col);
	bool		negative = (*s == '-');
	uint64		v;

	if (!parse_decimal(negative ? s + 1 : s,
					   negative ? (uint64) PG_INT64_MAX + 1 : PG_INT64_MAX,
					   &v))
		return bad_value(row, col, "bigint");
	*out = negative ? (int64) (0 - v) : (int64) v;
	return true;
}

bool
reply_bool(const ReplyRow *row, int col, bool *out)
{
	const char *s = value(row, col);

	if (strcmp(s, "t") != 0 && strcmp(s, "f") != 0)
		return bad_value(row, col, "boolean");
	*out = (s[0] == 't');
	return true;
}

/*
 * A replication slot name as core allows them: 1 to NAMEDATALEN - 1
 * characters of [a-z0-9_].  No path, no format, no truncation.
 */
bool
reply_slot_name(const ReplyRow *row, int col, NameData *name)
{
	const char *s = value(row, col);
	size_t		len = strlen(s);
	bool		valid = len > 0 && len < NAMEDATALEN;

	for (size_t i = 0; valid && i < len; i++)
		valid = (s[i] >= 'a' && s[i] <= 'z') ||
			(s[i] >= '0' && s[i] <= '9') || s[i] == '_';
	if (!valid)
	{
		appendStringInfo(row->err, "row %d: \"", row->rowno);
		append_remote_text(row->err, s, NAMEDATALEN);
		appendStringInfoString(row->err,
							   "\" is not a valid replication slot name");
		return false;
	}
	namestrcpy(name, s);
	return true;
}

/*
 * An output plugin name: it becomes a library name when the copy is
 * decoded after promotion, so nothing that reads as a path.  Letters,
 * digits, '_', '-' and '.', not starting with '.'.
 */
bool
reply_plugin_name(const ReplyRow *row, int col, NameData *name)
{
	const char *s = value(row, col);
	size_t		len = strlen(s);

	if (len == 0 || len >= NAMEDATALEN || s[0] == '.')
		return bad_value(row, col, "output plugin name");
	for (size_t i = 0; i < len; i++)
	{
		if (!isalnum((unsigned char) s[i]) && s[i] != '_' && s[i] != '-' &&
			s[i] != '.')
			return bad_value(row, col, "output plugin name");
	}
	namestrcpy(name, s);
	return true;
}

/* A database name: fits a name, valid in our encoding, no control bytes. */
bool
reply_database_name(const ReplyRow *row, int col, NameData *name)
{
	const char *s = value(row, col);
	size_t		len = strlen(s);

	if (len == 0 || len >= NAMEDATALEN || !pg_verifymbstr(s, len, true))
		return bad_value(row, col, "database name");
	for (size_t i = 0; i < len; i++)
	{
		if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
			return bad_value(row, col, "database name");
	}
	namestrcpy(name, s);
	return true;
}

/* The timeline in a WAL file name: 24 hex digits, the first 8 of them. */
bool
reply_wal_file_timeline(const ReplyRow *row, int col, TimeLineID *tli)
{
	const char *s = value(row, col);
	char		head[9];
	const char *p = head;
	uint32		v;

	if (strlen(s) != 24 || strspn(s, "0123456789ABCDEF") != 24)
		return bad_value(row, col, "WAL file name");
	memcpy(head, s, 8);
	head[8] = '\0';
	if (!parse_hex32(&p, &v) || v == 0)
		return bad_value(row, col, "WAL file name");
	*tli = v;
	return true;
}

/* bytea in hex output format ("\x" and pairs of hex digits), palloc'd. */
bool
reply_bytea(const ReplyRow *row, int col, char **data, Size *len)
{
	const char *s = value(row, col);
	size_t		n = strlen(s);

	*data = NULL;
	*len = 0;
	if (n < 2 || s[0] != '\\' || s[1] != 'x' || n % 2 != 0 ||
		strspn(s + 2, "0123456789abcdefABCDEF") != n - 2)
	{
		appendStringInfo(row->err, "column \"%s\" of row %d is not a valid bytea",
						 column_name(row, col), row->rowno);
		return false;
	}
	*len = (n - 2) / 2;
	*data = palloc(Max(*len, 1));
	for (Size i = 0; i < *len; i++)
	{
		char		pair[3] = {s[2 + 2 * i], s[3 + 2 * i], '\0'};

		(*data)[i] = (char) strtoul(pair, NULL, 16);
	}
	return true;
}
