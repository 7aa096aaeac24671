/*
 * clock.c: the injectable clock (clock.h).
 */
#include "clock.h"

#include <time.h>

void
clock_init_running(struct nclock *c, ntime_t start)
{
    atomic_store(&c->frozen, false);
    atomic_store(&c->at, 0);
    atomic_store(&c->offset, start ? start - (ntime_t)time(NULL) : 0);
}

void
clock_init_frozen(struct nclock *c, ntime_t at)
{
    atomic_store(&c->offset, 0);
    atomic_store(&c->at, at);
    atomic_store(&c->frozen, true);
}

ntime_t
clock_now(const struct nclock *c)
{
    if (atomic_load(&c->frozen))
        return atomic_load(&c->at);
    return (ntime_t)time(NULL) + atomic_load(&c->offset);
}

int64_t
clock_now_ms(const struct nclock *c)
{
    struct timespec ts;
    if (atomic_load(&c->frozen))
        return atomic_load(&c->at) * 1000;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec + atomic_load(&c->offset)) * 1000 + ts.tv_nsec / 1000000;
}

bool
clock_is_frozen(const struct nclock *c)
{
    return atomic_load(&c->frozen);
}

void
clock_set(struct nclock *c, ntime_t at)
{
    atomic_store(&c->at, at);
}
