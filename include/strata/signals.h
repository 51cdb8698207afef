// Orderly shutdown on SIGINT and SIGTERM for Strata's daemons: the signals are blocked in
// every thread and main waits for them with WaitForShutdownSignal, then stops its parts in
// order (stop accepting, drain, flush) instead of dying in a signal handler.
#pragma once

#include <signal.h>

namespace strata {

// Blocks SIGINT and SIGTERM in the calling thread and every thread started after it; call it
// before starting any thread.
sigset_t BlockShutdownSignals();

// Waits for one of the blocked signals; returns its number.
int WaitForShutdownSignal(const sigset_t& signals);

}  // namespace strata
