// The stop request of a thread that loops until it is told to stop: Stop() wakes every
// waiter at once, so a loop that sleeps between rounds (a backoff, a poll interval) ends
// without waiting for its sleep to run out. One copy of the flag + mutex + condition
// variable that each such loop would otherwise carry.
//
// Thread-safe. Typical use:
//   while (!stop_.stopped()) { DoRound(); stop_.WaitFor(interval); }
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace strata {

class StopSignal {
 public:
  // Idempotent; true for the call that stopped it.
  bool Stop() {
    std::lock_guard lock(mu_);
    if (stopped_.exchange(true)) return false;
    cv_.notify_all();
    return true;
  }

  bool stopped() const { return stopped_.load(); }

  // Sleeps up to `d`, less once stopped; true when stopped.
  bool WaitFor(std::chrono::milliseconds d) const {
    return WaitFor(d, [] { return false; });
  }

  // Sleeps up to `d`, less once stopped or once `wake()` holds (checked at every Notify());
  // true when stopped.
  template <typename Pred>
  bool WaitFor(std::chrono::milliseconds d, Pred wake) const {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [&] { return stopped_.load() || wake(); });
    return stopped_.load();
  }

  // Waiters check their wake() again (the state it reads changed).
  void Notify() const {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::atomic<bool> stopped_{false};
};

}  // namespace strata
