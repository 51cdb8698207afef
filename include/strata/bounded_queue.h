// A bounded multi-producer queue whose Push waits while it is full: the one way Strata hands
// work from a thread it does not own (an MQTT callback, a gRPC stream reader) to the thread
// that processes it. Waiting, not dropping, is the back-pressure: the edge's MQTT callback
// stops Paho from reading the socket (the broker keeps the messages for the persistent
// session), the edge hub's stream reader stops reading the stream (gRPC flow control slows
// the edge).
//
// Bounded by a number of items and, optionally, by bytes (a size function says how many an
// item weighs); one item always fits an empty queue, however large. Close() ends it for
// producers (Push fails from then on) and wakes everyone; consumers still take what is left.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

namespace strata {

struct QueueLimits {
  std::size_t max_items = 1024;
  std::size_t max_bytes = std::numeric_limits<std::size_t>::max();
};

template <typename T>
class BoundedQueue {
 public:
  using SizeOf = std::function<std::size_t(const T&)>;
  // Whether `next` joins the items taken so far (never empty) in one PopBatch.
  using Joins = std::function<bool(const T& next, std::span<const T> taken)>;

  explicit BoundedQueue(QueueLimits limits, SizeOf size_of = nullptr)
      : limits_(limits), size_of_(std::move(size_of)) {}
  explicit BoundedQueue(std::size_t max_items) : BoundedQueue(QueueLimits{.max_items = max_items}) {}

  // Waits while full; false once the queue is closed (the item is dropped with the queue).
  bool Push(T item) {
    const std::size_t size = size_of_ ? size_of_(item) : 0;
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] {
      return closed_ || items_.empty() || (items_.size() < limits_.max_items && bytes_ + size <= limits_.max_bytes);
    });
    if (closed_) return false;
    bytes_ += size;
    items_.push_back({std::move(item), size});
    not_empty_.notify_one();
    return true;
  }

  // Pushes only if there is room now; false when full or closed (the item is dropped).
  bool TryPush(T item) {
    const std::size_t size = size_of_ ? size_of_(item) : 0;
    std::lock_guard lock(mu_);
    if (closed_ || !(items_.empty() || (items_.size() < limits_.max_items && bytes_ + size <= limits_.max_bytes))) {
      return false;
    }
    bytes_ += size;
    items_.push_back({std::move(item), size});
    not_empty_.notify_one();
    return true;
  }

  // Moves up to `max` items into `out`: waits for the first one up to `timeout` (nullopt:
  // until one comes or the queue is closed), then up to `linger` for more to arrive. Stops
  // before an item that `joins` refuses, or that would take `out` past the byte limit.
  // Returns false once the queue is closed and empty (nothing was taken).
  bool PopBatch(std::vector<T>& out, std::size_t max, std::optional<std::chrono::milliseconds> timeout,
                std::chrono::milliseconds linger = std::chrono::milliseconds(0), const Joins& joins = nullptr) {
    std::unique_lock lock(mu_);
    auto ready = [&] { return closed_ || !items_.empty(); };
    if (timeout) {
      not_empty_.wait_for(lock, *timeout, ready);
    } else {
      not_empty_.wait(lock, ready);
    }
    if (items_.empty()) return !closed_;
    if (linger.count() > 0 && items_.size() < max) {
      not_empty_.wait_for(lock, linger,
                          [&] { return closed_ || items_.size() >= std::min(max, limits_.max_items); });
    }
    const std::size_t first = out.size();
    std::size_t taken_bytes = 0;
    while (!items_.empty() && out.size() - first < max) {
      Entry& next = items_.front();
      if (out.size() > first) {
        if (taken_bytes + next.size > limits_.max_bytes) break;
        if (joins && !joins(next.item, std::span<const T>(out.data() + first, out.size() - first))) break;
      }
      taken_bytes += next.size;
      bytes_ -= next.size;
      out.push_back(std::move(next.item));
      items_.pop_front();
    }
    not_full_.notify_all();
    return true;
  }

  // Producers are done (or the consumer left): Push fails from now on, waiters wake.
  void Close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }

  std::size_t Size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }

 private:
  struct Entry {
    T item;
    std::size_t size;
  };

  const QueueLimits limits_;
  const SizeOf size_of_;
  mutable std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<Entry> items_;  // guarded by mu_
  std::size_t bytes_ = 0;    // guarded by mu_: of the queued items
  bool closed_ = false;      // guarded by mu_
};

}  // namespace strata
