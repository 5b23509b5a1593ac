/* The retention sweeper. On the leader, every --retention-sweep-ms, it
 * walks every record (a slice at a time) and proposes, 32 records per
 * command, the fields found past their kind's retention_days, counted
 * from the record's last update. Applying the command drops those fields
 * and their blind-index rows on every replica, after checking each again
 * against the command's time, and leaves one audit entry per command
 * (action "retention.sweep", naming the records looked at; a sweep that
 * finds nothing still leaves one). Records keep their other fields; the
 * version goes up.
 *
 * Whole records of a kind with record_retention_days, past it (counted
 * from their last update or their creation, as the kind says), are
 * proposed the same way, 32 per RecordRetentionOp: applying it checks each
 * again against the command's time and deletes it as a Delete would (index
 * rows, links both ways, subject membership, its earlier changes in the
 * feed), records the expiry in the change feed, and leaves one audit entry
 * ("retention.expire_records", naming the records).
 *
 * Neither touches a record whose subject is restricted (GDPR Art. 18: the
 * data is to be stored, and nothing else, until the restriction is
 * lifted, e.g. because the subject needs it for a legal claim): the
 * sweeper leaves such records out and the state machine checks again at
 * the command's place in the log. Retention catches up with them at the
 * first sweep after the restriction is lifted. */
#ifndef DOSSIER_NODE_RETENTION_H
#define DOSSIER_NODE_RETENTION_H

#include <stdint.h>

#include "server.h"

struct retention;

/* Starts sweeping for node @n every @interval_ms (0: never; *@out NULL),
 * with the clock moved @offset_ms ahead (tests only). Errors:
 * DOSSIER_NOMEM, DOSSIER_INTERNAL. */
int retention_start(struct node *n, int64_t interval_ms, int64_t offset_ms,
                    struct retention **out, struct dossier_status *st);

/* Stops the sweeper (a sweep under way ends first). NULL is a no-op. */
void retention_stop(struct retention *rt);

#endif
