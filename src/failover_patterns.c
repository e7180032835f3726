/*-------------------------------------------------------------------------
 *
 * failover_patterns.c
 *		The pg_slotsync.failover_slot_patterns setting: which logical slots
 *		are failover slots by their name alone.
 *
 * PostgreSQL 15's replication protocol has no FAILOVER option, so tools that
 * create their slots over it (CREATE SUBSCRIPTION, Debezium, pg_recvlogical)
 * cannot ask for a failover slot.  A DBA names such slots here instead, as a
 * comma-separated list of SQL LIKE patterns ('%' any run of characters, '_'
 * one character, '\' escapes the next character).
 *
 * Slot names may only hold lower-case letters, digits and underscores, so a
 * pattern with any other character (an upper-case letter, a space, a dash)
 * could never match; we reject it when the setting is changed, with a
 * message that says which pattern and which character, rather than letting
 * the DBA wonder why nothing is synchronized.  Checking happens in the GUC
 * check hook, so a bad value never takes effect: SET/ALTER SYSTEM fail, and
 * a reload keeps the old value and logs why.
 *
 * Matching is done here, on the parsed list, without the SQL LIKE machinery:
 * it runs in walsenders and in the sync cycle, where we want no catalog
 * access and no transaction.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_slotsync.h"
#include "slot_marker.h"
#include "utils/guc.h"

/* The parsed list: count, then NUL-terminated patterns back to back. */
typedef struct FailoverPatterns
{
	int			count;
	char		patterns[FLEXIBLE_ARRAY_MEMBER];
} FailoverPatterns;

static FailoverPatterns *current_patterns = NULL;

static bool
pattern_char_is_valid(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '%' || c == '\\';
}

/*
 * Check hook: split on commas, trim blanks, validate each pattern, and hand
 * the parsed list to the assign hook through *extra.
 */
bool
check_failover_slot_patterns(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;
	FailoverPatterns *parsed;
	char	   *out;
	int			count = 0;

	/* room for every character plus a terminator per element is enough */
	/* GUC frees "extra" with free(), so it must come from malloc() */
	parsed = (FailoverPatterns *) malloc(offsetof(FailoverPatterns, patterns) +
										 strlen(p) + 2);
	if (parsed == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	out = parsed->patterns;

	/* an empty or all-blank value means "no patterns" */
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;

	while (*p != '\0')
	{
		const char *start;
		const char *end;
		int			len;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		start = p;
		while (*p != ',' && *p != '\0')
			p++;
		end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t' ||
							   end[-1] == '\n'))
			end--;
		len = end - start;

		if (len == 0)
		{
			GUC_check_errdetail("List element %d is empty.", count + 1);
			free(parsed);
			return false;
		}
		if (len >= NAMEDATALEN)
		{
			GUC_check_errdetail("Pattern \"%.*s\" is longer than %d characters.",
								len, start, NAMEDATALEN - 1);
			free(parsed);
			return false;
		}
		for (int i = 0; i < len; i++)
		{
			if (!pattern_char_is_valid(start[i]))
			{
				GUC_check_errdetail("Pattern \"%.*s\" contains character \"%c\", which no replication slot name can contain.",
									len, start, start[i]);
				GUC_check_errhint("Slot names consist of lower-case letters, digits and underscores; patterns may also use %% and \\.");
				free(parsed);
				return false;
			}
			if (start[i] == '\\')
			{
				i++;
				if (i == len)
				{
					GUC_check_errdetail("Pattern \"%.*s\" ends with the escape character.",
										len, start);
					free(parsed);
					return false;
				}
				if (!pattern_char_is_valid(start[i]))
				{
					GUC_check_errdetail("Pattern \"%.*s\" contains character \"%c\", which no replication slot name can contain.",
										len, start, start[i]);
					free(parsed);
					return false;
				}
			}
		}

		memcpy(out, start, len);
		out[len] = '\0';
		out += len + 1;
		count++;

		if (*p == ',')
		{
			p++;
			/* a trailing comma leaves an empty last element */
			while (*p == ' ' || *p == '\t' || *p == '\n')
				p++;
			if (*p == '\0')
			{
				GUC_check_errdetail("List element %d is empty.", count + 1);
				free(parsed);
				return false;
			}
		}
	}

	parsed->count = count;
	*extra = parsed;
	return true;
}

void
assign_failover_slot_patterns(const char *newval, void *extra)
{
	current_patterns = (FailoverPatterns *) extra;
}

/*
 * SQL LIKE on a slot name: '%' matches any run of characters, '_' exactly
 * one, '\' makes the next character literal.  Iterative with one point of
 * backtracking (the last '%'), which is all LIKE needs.
 */
bool
slot_like_match(const char *name, const char *pattern)
{
	const char *star_pattern = NULL;
	const char *star_name = NULL;

	while (*name != '\0')
	{
		if (*pattern == '%')
		{
			star_pattern = ++pattern;
			star_name = name;
			continue;
		}
		if (*pattern == '_' ||
			(*pattern == '\\' && pattern[1] == *name) ||
			(*pattern != '\\' && *pattern != '\0' && *pattern == *name))
		{
			pattern += (*pattern == '\\') ? 2 : 1;
			name++;
			continue;
		}
		if (star_pattern == NULL)
			return false;
		/* let the last '%' swallow one more character and retry */
		pattern = star_pattern;
		name = ++star_name;
	}

	while (*pattern == '%')
		pattern++;
	return *pattern == '\0';
}

/*
 * Does the slot name match any configured pattern?
 */
bool
failover_patterns_match(const char *slot_name)
{
	const char *pattern;

	if (current_patterns == NULL)
		return false;

	pattern = current_patterns->patterns;
	for (int i = 0; i < current_patterns->count; i++)
	{
		if (slot_like_match(slot_name, pattern))
			return true;
		pattern += strlen(pattern) + 1;
	}
	return false;
}

/*
 * Is this slot a failover slot?  Its own flag says so, or, on a primary,
 * its name matches a pattern.  Only persistent logical slots qualify: a
 * temporary slot dies with its session and cannot be resumed after a
 * failover, and a slot still being created is not a slot yet.  Neither do
 * a synced copy that is not ready and the sync worker's anchor, should a
 * promoted server still have them: nobody may resume from them.  Patterns are
 * a primary's business; on a standby only the flag counts (synchronized
 * slots carry it, so that they are failover slots again after promotion).
 */
bool
slot_counts_as_failover(const char *slot_name, bool is_logical,
						ReplicationSlotPersistency persistency,
						uint32 marker_flags, bool in_recovery)
{
	if (!is_logical || persistency != RS_PERSISTENT)
		return false;
	/* what syncing leaves behind is never a slot to resume from */
	if ((marker_flags & SLOT_MARKER_ANCHOR) ||
		((marker_flags & SLOT_MARKER_SYNCED) &&
		 !(marker_flags & SLOT_MARKER_READY)))
		return false;
	if (marker_flags & SLOT_MARKER_FAILOVER)
		return true;
	return !in_recovery && failover_patterns_match(slot_name);
}
