/*-------------------------------------------------------------------------
 *
 * standby_slots_guc.c
 *		The pg_slotsync.synchronized_standby_slots setting: syntax, checking
 *		and the parsed form the gate works from.
 *
 * The setting names the physical slots of the standbys that must have a
 * piece of WAL before a consumer of a failover slot may see it (PostgreSQL
 * 17's synchronized_standby_slots).  Three forms:
 *
 *	  sb1, sb2, sb3			every listed standby must confirm (core's form)
 *	  FIRST n (sb1, sb2, sb3)	the n highest-priority usable standbys must
 *	  ANY n (sb1, sb2, sb3)		any n of the listed standbys must confirm
 *
 * FIRST n works like synchronous_standby_names' FIRST: priority is list
 * order, and the gate waits for the first n slots in that order that are
 * usable.  A slot is usable when it exists, is physical, is not invalidated,
 * and either has a connected standby (active_pid) or has already confirmed
 * the position in question.  So a standby that is down, or whose slot is
 * gone, hands its place to the next listed one; a standby that is merely
 * behind keeps its place and is waited for.  If fewer than n slots are
 * usable, the gate waits, and warns about the unusable ones.  A plain list
 * is FIRST n with n the length of the list, which is exactly core's rule:
 * every slot must exist, be valid, and confirm.
 *
 * ANY n counts the slots that have confirmed the position, whatever their
 * place or connection state, and needs n of them.
 *
 * The keywords are case-insensitive; slot names follow identifier rules as
 * in core (an unquoted name is folded to lower case, a double-quoted one is
 * taken as written), and must then be valid slot names: 1 to 63 lower-case
 * letters, digits and underscores.  A name may appear only once: in ANY a
 * repeated name would count twice, and in a plain list it is a mistake.
 * n must be between 1 and the number of listed slots.  A slot named "first"
 * or "any" can still be listed: the keyword reading applies only when a
 * number and "(" follow.
 *
 * Only syntax is checked here, never the slots themselves: the value must be
 * settable before the slots exist, in any process (PostgreSQL 17.0-17.6 did
 * look the slots up in the check hook, which crashed processes without a
 * PGPROC and failed parallel worker start).  A bad value is refused by the
 * check hook, so SET/ALTER SYSTEM fail with a message saying what is wrong,
 * and a reload keeps the old value and logs why.
 *
 * The parsed list is the GUC "extra" and so private to each process; the
 * gate keeps its per-slot scratch space and warning timestamps in it.  The
 * assign hook carries the warning timestamps over to the new list, so a
 * reload does not make every warning fire again, and bumps a generation
 * counter by which the gate knows its cached answers are stale.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "pg_slotsync.h"
#include "standby_gate.h"
#include "utils/builtins.h"
#include "utils/guc.h"

StandbySlotsConfig *standby_slots_config = NULL;
uint64		standby_slots_generation = 0;

typedef enum StandbySlotsToken
{
	TOK_END,
	TOK_WORD,					/* unquoted, folded to lower case */
	TOK_QUOTED,					/* double-quoted, as written */
	TOK_COMMA,
	TOK_OPEN,
	TOK_CLOSE,
	TOK_BAD_QUOTE				/* a quote that is never closed */
} StandbySlotsToken;

/* One token; "text" holds a word or name, truncated to fit. */
typedef struct Lexer
{
	const char *p;				/* where to read on */
	const char *start;			/* where the current token starts */
	StandbySlotsToken tok;
	char		text[NAMEDATALEN + 1];
	int			len;			/* length before truncation */
	char		bad_char;		/* first character no slot name may hold */
} Lexer;

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
		c == '\v';
}

static void
lexer_keep(Lexer *lx, char c)
{
	bool		valid = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '_';

	if (!valid && lx->bad_char == '\0')
		lx->bad_char = c;
	if (lx->len < NAMEDATALEN)
		lx->text[lx->len] = c;
	lx->len++;
}

static void
lexer_next(Lexer *lx)
{
	while (is_blank(*lx->p))
		lx->p++;

	lx->start = lx->p;
	lx->len = 0;
	lx->bad_char = '\0';
	switch (*lx->p)
	{
		case '\0':
			lx->tok = TOK_END;
			return;
		case ',':
			lx->tok = TOK_COMMA;
			lx->p++;
			return;
		case '(':
			lx->tok = TOK_OPEN;
			lx->p++;
			return;
		case ')':
			lx->tok = TOK_CLOSE;
			lx->p++;
			return;
		case '"':
			lx->p++;
			for (;;)
			{
				if (*lx->p == '\0')
				{
					lx->tok = TOK_BAD_QUOTE;
					return;
				}
				if (*lx->p == '"')
				{
					if (lx->p[1] != '"')
						break;
					lx->p++;	/* "" stands for one " */
				}
				lexer_keep(lx, *lx->p++);
			}
			lx->p++;
			lx->tok = TOK_QUOTED;
			break;
		default:
			while (*lx->p != '\0' && !is_blank(*lx->p) && *lx->p != ',' &&
				   *lx->p != '(' && *lx->p != ')' && *lx->p != '"')
			{
				char		c = *lx->p++;

				if (c >= 'A' && c <= 'Z')
					c += 'a' - 'A';
				lexer_keep(lx, c);
			}
			lx->tok = TOK_WORD;
			break;
	}
	lx->text[Min(lx->len, NAMEDATALEN)] = '\0';
}

static bool
word_is_number(const Lexer *lx)
{
	if (lx->tok != TOK_WORD || lx->len == 0 || lx->len > NAMEDATALEN)
		return false;
	for (int i = 0; i < lx->len; i++)
		if (lx->text[i] < '0' || lx->text[i] > '9')
			return false;
	return true;
}

/*
 * Parse a slot list, up to TOK_END (plain form) or TOK_CLOSE (after FIRST n
 * or ANY n).  Names go to names[], *count says how many.  Returns false after
 * setting the GUC error detail.
 */
static bool
parse_slot_list(Lexer *lx, bool in_parens, NameData *names, int *count)
{
	int			n = 0;

	for (;;)
	{
		lexer_next(lx);
		if (lx->tok == TOK_BAD_QUOTE)
		{
			GUC_check_errdetail("List element %d has an unterminated quoted name.",
								n + 1);
			return false;
		}
		if (lx->tok != TOK_WORD && lx->tok != TOK_QUOTED)
		{
			if (lx->tok == TOK_OPEN)
			{
				GUC_check_errdetail("List element %d starts with \"(\".", n + 1);
				GUC_check_errhint("Write a quorum as FIRST n (slot, ...) or ANY n (slot, ...).");
			}
			else
				GUC_check_errdetail("List element %d is empty.", n + 1);
			return false;
		}
		if (lx->len == 0)
		{
			GUC_check_errdetail("Replication slot name \"\" is too short.");
			return false;
		}
		if (lx->len >= NAMEDATALEN)
		{
			GUC_check_errdetail("Replication slot name \"%.*s...\" is too long (at most %d characters).",
								NAMEDATALEN - 1, lx->text, NAMEDATALEN - 1);
			return false;
		}
		if (lx->bad_char != '\0')
		{
			GUC_check_errdetail("Replication slot name \"%s\" contains invalid character \"%c\".",
								lx->text, lx->bad_char);
			GUC_check_errhint("Replication slot names may only contain lower case letters, numbers, and the underscore character.");
			return false;
		}
		for (int i = 0; i < n; i++)
		{
			if (strcmp(NameStr(names[i]), lx->text) == 0)
			{
				GUC_check_errdetail("Replication slot \"%s\" is listed more than once.",
									lx->text);
				return false;
			}
		}
		namestrcpy(&names[n++], lx->text);

		lexer_next(lx);
		if (lx->tok == TOK_COMMA)
			continue;
		if (in_parens ? lx->tok == TOK_CLOSE : lx->tok == TOK_END)
			break;
		if (in_parens && lx->tok == TOK_END)
			GUC_check_errdetail("The list of replication slots is missing its closing \")\".");
		else if (in_parens)
			GUC_check_errdetail("Expected \",\" or \")\" after replication slot name \"%s\".",
								NameStr(names[n - 1]));
		else if (lx->tok == TOK_OPEN && n == 1)
		{
			GUC_check_errdetail("Expected \",\" after replication slot name \"%s\".",
								NameStr(names[n - 1]));
			GUC_check_errhint("Write a quorum as FIRST n (slot, ...) or ANY n (slot, ...).");
		}
		else
			GUC_check_errdetail("Expected \",\" after replication slot name \"%s\".",
								NameStr(names[n - 1]));
		return false;
	}

	*count = n;
	return true;
}

/*
 * Check hook: parse the value and hand the result to the assign hook.  An
 * empty value parses to no list at all (*extra stays NULL): nobody waits.
 */
bool
check_synchronized_standby_slots(char **newval, void **extra, GucSource source)
{
	Lexer		lx;
	StandbySlotsMethod method = STANDBY_SLOTS_FIRST;
	bool		plain = true;
	long		num_required = 0;
	char		number[NAMEDATALEN + 1] = "";
	NameData   *names;
	int			nnames = 0;
	StandbySlotsConfig *config;

	lx.p = *newval;
	lexer_next(&lx);
	if (lx.tok == TOK_END)
		return true;

	/* FIRST n ( or ANY n ( ? */
	if (lx.tok == TOK_WORD &&
		(strcmp(lx.text, "first") == 0 || strcmp(lx.text, "any") == 0))
	{
		Lexer		ahead = lx;

		lexer_next(&ahead);
		if (word_is_number(&ahead))
		{
			method = strcmp(lx.text, "any") == 0 ? STANDBY_SLOTS_ANY :
				STANDBY_SLOTS_FIRST;
			strlcpy(number, ahead.text, sizeof(number));
			plain = false;
			errno = 0;
			num_required = strtol(ahead.text, NULL, 10);
			if (errno == ERANGE || num_required > INT_MAX)
				num_required = INT_MAX;
			lexer_next(&ahead);
			if (ahead.tok != TOK_OPEN)
			{
				GUC_check_errdetail("Expected \"(\" after \"%s %s\".",
									method == STANDBY_SLOTS_ANY ? "ANY" : "FIRST",
									number);
				return false;
			}
			lx = ahead;
		}
	}
	if (plain)
		lx.p = *newval;			/* start over: it is a plain list */

	/* every name takes at least one character and a separator */
	names = palloc((strlen(*newval) / 2 + 1) * sizeof(NameData));
	if (!parse_slot_list(&lx, !plain, names, &nnames))
	{
		pfree(names);
		return false;
	}

	if (!plain)
	{
		lexer_next(&lx);
		if (lx.tok != TOK_END)
		{
			GUC_check_errdetail("Unexpected text after the closing \")\": \"%s\".",
								lx.start);
			pfree(names);
			return false;
		}
		if (num_required < 1)
		{
			GUC_check_errdetail("The number of standbys to wait for must be at least 1.");
			GUC_check_errhint("To let consumers of failover slots run ahead of every standby, set \"%s\" to an empty string.",
							  STANDBY_SLOTS_GUC_NAME);
			pfree(names);
			return false;
		}
		if (num_required > nnames)
		{
			GUC_check_errdetail("\"%s %s\" asks for more standbys than the %d listed.",
								method == STANDBY_SLOTS_ANY ? "ANY" : "FIRST",
								number, nnames);
			pfree(names);
			return false;
		}
	}
	else
		num_required = nnames;

	/* GUC frees "extra" with free(), so it must come from malloc() */
	config = (StandbySlotsConfig *)
		malloc(offsetof(StandbySlotsConfig, slots) +
			   nnames * sizeof(StandbySlot));
	if (config == NULL)
	{
		pfree(names);
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	memset(config, 0, offsetof(StandbySlotsConfig, slots) +
		   nnames * sizeof(StandbySlot));
	config->method = method;
	config->num_required = (int) num_required;
	config->nslots = nnames;
	for (int i = 0; i < nnames; i++)
		config->slots[i].name = names[i];
	pfree(names);

	*extra = config;
	return true;
}

/*
 * Assign hook: switch to the new list, keeping when we last warned about
 * each slot that stays listed.  Must not fail.
 */
void
assign_synchronized_standby_slots(const char *newval, void *extra)
{
	StandbySlotsConfig *old = standby_slots_config;
	StandbySlotsConfig *new = (StandbySlotsConfig *) extra;

	if (old != NULL && new != NULL && old != new)
	{
		for (int i = 0; i < new->nslots; i++)
			for (int j = 0; j < old->nslots; j++)
				if (strcmp(NameStr(new->slots[i].name),
						   NameStr(old->slots[j].name)) == 0)
					new->slots[i].last_warning = old->slots[j].last_warning;
	}

	standby_slots_config = new;
	standby_slots_generation++;
}

/*
 * Is this slot one of the listed ones?
 */
bool
standby_slots_lists(const char *slot_name)
{
	StandbySlotsConfig *config = standby_slots_config;

	if (config == NULL)
		return false;
	for (int i = 0; i < config->nslots; i++)
		if (strcmp(NameStr(config->slots[i].name), slot_name) == 0)
			return true;
	return false;
}
