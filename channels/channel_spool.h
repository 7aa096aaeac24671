/*
 * channel_spool.h: the spool and task backends, which keep messages on this
 * machine: the spool writes each message as a file (the embedded default, so
 * a newcomer sees real output with no mail server); the task backend turns
 * a task action into a row of the tasks table for customer-care staff.
 */
#ifndef NUDGE_CHANNEL_SPOOL_H
#define NUDGE_CHANNEL_SPOOL_H

#include <nudge/channel.h>

extern const struct channel_backend channel_backend_spool;
extern const struct channel_backend channel_backend_task;

#endif
