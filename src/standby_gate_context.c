/*-------------------------------------------------------------------------
 *
 * standby_gate_context.c
 *		Finding the LogicalDecodingContext of a slot in memory, so that the
 *		gate can replace its WAL reader.
 *
 * Core keeps a decoding context in walsender.c's static
 * logical_decoding_ctx, or in a local variable of a SQL function; PostgreSQL
 * 15 hands it to no hook.  We find it through the memory context tree
 * instead.  StartupDecodingContext() creates a memory context named
 * "Logical decoding context" under the current one and allocates the
 * LogicalDecodingContext as the first chunk in it; the WAL reader is
 * allocated right after, with private_data pointing back to the context.
 *
 * Recognising a chunk: an AllocSet context's first block follows its header,
 * and each chunk's header ends with a pointer to its set.  We look at the
 * first DECODING_CONTEXT_SCAN bytes after the context header for a position
 * where (a) the word before it points to the memory context, (b) the
 * LogicalDecodingContext there names that memory context, (c) its slot is
 * the slot we hold, and (d) its reader points back to it and has a page_read
 * callback.  Nothing less counts: a false match could only ever make us
 * wrap the wrong reader, and all four together do not happen by chance.
 *
 * Where to look: core creates the context under the current memory context,
 * so the children of the current context and of its ancestors come first;
 * failing that, the whole tree (depth first, without recursion).
 *
 * The caller learns whether a memory context with that name existed at all
 * ("seen"): seen but not recognised means a decoding context we cannot
 * gate, which the callers refuse (fail closed); not seen means no decoding
 * is going on, as far as the tree says.
 *
 * Self-test: gate_context_self_test() builds a decoding context the way
 * core does (same name, same allocation sizes, the context first and the
 * reader after it) and checks that the search finds it.  It runs once at
 * startup (standby_gate.c); if the allocator's layout ever changed, the log
 * says so and every consumer of a failover slot is refused rather than
 * served ungated.  Nothing here can raise an error: it only reads memory,
 * so it may run inside a cache invalidation callback.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlogutils.h"
#include "nodes/memnodes.h"
#include "standby_gate_internal.h"
#include "utils/memutils.h"

/* Name core gives the memory context of a LogicalDecodingContext. */
#define DECODING_CONTEXT_NAME		"Logical decoding context"

/* How far into that context's first block we look for the chunk. */
#define DECODING_CONTEXT_SCAN		1024

/*
 * Is "context" a decoding context's memory context (then set *seen)?  If so
 * and "recognise", return the LogicalDecodingContext of "slot" allocated in
 * it, or NULL if no chunk passes the checks.
 */
static LogicalDecodingContext *
decoding_context_in(MemoryContext context, ReplicationSlot *slot,
					bool recognise, bool *seen)
{
	if (!IsA(context, AllocSetContext) || context->name == NULL ||
		strcmp(context->name, DECODING_CONTEXT_NAME) != 0)
		return NULL;
	*seen = true;
	if (!recognise)
		return NULL;

	for (Size off = MAXALIGN(sizeof(MemoryContextData));
		 off < DECODING_CONTEXT_SCAN; off += MAXIMUM_ALIGNOF)
	{
		void	  **p = (void **) ((char *) context + off);
		LogicalDecodingContext *ctx = (LogicalDecodingContext *) p;

		if (p[-1] == (void *) context &&
			ctx->context == context &&
			ctx->slot == slot &&
			ctx->reader != NULL &&
			ctx->reader->private_data == (void *) ctx &&
			ctx->reader->routine.page_read != NULL)
			return ctx;
	}
	return NULL;
}

/*
 * Find the LogicalDecodingContext of "slot".  Returns NULL if there is none
 * we recognise; *seen says whether a decoding context's memory context was
 * there at all.  With "recognise" false we only look for the memory context
 * (pg_slotsync.debug_gate_skip_attach uses it to play a layout we do not
 * know).
 */
LogicalDecodingContext *
gate_find_decoding_context(ReplicationSlot *slot, bool recognise, bool *seen)
{
	LogicalDecodingContext *ctx;
	MemoryContext context;

	*seen = false;

	for (MemoryContext ancestor = CurrentMemoryContext; ancestor != NULL;
		 ancestor = ancestor->parent)
	{
		for (context = ancestor->firstchild; context != NULL;
			 context = context->nextchild)
		{
			ctx = decoding_context_in(context, slot, recognise, seen);
			if (ctx != NULL)
				return ctx;
		}
	}

	context = TopMemoryContext;
	while (context != NULL)
	{
		if ((ctx = decoding_context_in(context, slot, recognise, seen)) != NULL)
			return ctx;

		if (context->firstchild != NULL)
			context = context->firstchild;
		else
		{
			while (context != NULL && context->nextchild == NULL)
				context = context->parent;
			if (context != NULL)
				context = context->nextchild;
		}
	}
	return NULL;
}

/*
 * Build a decoding context as StartupDecodingContext() does and check that
 * gate_find_decoding_context() finds it.
 */
bool
gate_context_self_test(void)
{
	static ReplicationSlot probe_slot;	/* only its address is used */
	MemoryContext probe_context;
	MemoryContext old_context;
	LogicalDecodingContext *ctx;
	LogicalDecodingContext *found;
	bool		seen;

	probe_context = AllocSetContextCreate(CurrentMemoryContext,
										  DECODING_CONTEXT_NAME,
										  ALLOCSET_DEFAULT_SIZES);
	old_context = MemoryContextSwitchTo(probe_context);
	ctx = palloc0(sizeof(LogicalDecodingContext));
	ctx->context = probe_context;
	ctx->slot = &probe_slot;
	ctx->reader = palloc0(sizeof(XLogReaderState));
	ctx->reader->private_data = ctx;
	ctx->reader->routine.page_read = read_local_xlog_page;
	MemoryContextSwitchTo(old_context);

	found = gate_find_decoding_context(&probe_slot, true, &seen);

	MemoryContextDelete(probe_context);
	return found == ctx;
}
