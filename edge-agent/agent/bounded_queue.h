// A bounded multi-producer queue whose Push waits while it is full. The MQTT callback pushes
// into it; when the pipeline falls behind, the callback's wait stops Paho from reading the
// socket, the broker holds the messages for our persistent session, and nothing is dropped.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>

namespace strata::edge {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t capacity) : capacity_(capacity) {}

  // Waits while full; returns false if the queue was closed.
  bool Push(T item) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
    if (closed_) return false;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }

  // Moves up to `max` items into `out`, waiting up to `timeout` for the first one and then up
  // to `linger` for more to arrive (until `max` are there). Returns false once the queue is
  // closed and empty.
  bool PopBatch(std::vector<T>& out, std::size_t max, std::chrono::milliseconds timeout,
                std::chrono::milliseconds linger = std::chrono::milliseconds(0)) {
    std::unique_lock lock(mu_);
    not_empty_.wait_for(lock, timeout, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return !closed_;
    if (linger.count() > 0 && items_.size() < max) {
      not_empty_.wait_for(lock, linger, [&] { return closed_ || items_.size() >= std::min(max, capacity_); });
    }
    while (!items_.empty() && out.size() < max) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    not_full_.notify_all();
    return true;
  }

  // Wakes everyone; Push fails from now on, PopBatch drains what is left.
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
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<T> items_;  // guarded by mu_
  bool closed_ = false;  // guarded by mu_
};

}  // namespace strata::edge
