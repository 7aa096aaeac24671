/*
 * clock.h: the daemon's clock, injectable for tests and demos. Either real
 * time plus a fixed offset (`nudged --now T`: the clock starts at T and
 * runs) or frozen at an instant that only clock_set moves (`--now T
 * --frozen`, moved by `nudgectl advance`). Every field is atomic, so any
 * thread (the loop, dispatch workers, the HTTP listener) may read it while
 * the loop thread moves it.
 */
#ifndef NUDGE_CLOCK_H
#define NUDGE_CLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct nclock {
    atomic_bool frozen;
    _Atomic ntime_t at;     /* frozen: the instant */
    _Atomic int64_t offset; /* running: seconds added to real time */
};

/* A running clock that reads `start` now (start = 0: real time). */
void clock_init_running(struct nclock *c, ntime_t start);
/* A clock frozen at `at`. */
void clock_init_frozen(struct nclock *c, ntime_t at);
/* The current instant (Unix seconds). */
ntime_t clock_now(const struct nclock *c);
/* The current instant in milliseconds (tick alignment). */
int64_t clock_now_ms(const struct nclock *c);
bool clock_is_frozen(const struct nclock *c);
/* Moves a frozen clock to `at` (the caller checks it only moves forward). */
void clock_set(struct nclock *c, ntime_t at);

#endif
