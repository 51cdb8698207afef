// The queue between Paho's callback and the pipeline: group commits gather what arrives
// within the linger, stop gathering as soon as a group is full, and drain after Close().
#include <gtest/gtest.h>

#include <thread>

#include "agent/bounded_queue.h"

namespace strata::edge {
namespace {

using std::chrono::milliseconds;

TEST(BoundedQueueTest, LingerGathersItemsThatArriveAfterTheFirst) {
  BoundedQueue<int> q(100);
  ASSERT_TRUE(q.Push(1));
  std::thread producer([&] {
    for (int i = 2; i <= 5; ++i) q.Push(i);
  });
  std::vector<int> out;
  // A generous linger: the producer's four pushes land well inside it, and the group is
  // returned once it holds `max` items, not at the end of the linger.
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(q.PopBatch(out, 5, milliseconds(1000), milliseconds(10000)));
  const auto waited = std::chrono::steady_clock::now() - start;
  producer.join();
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_LT(waited, milliseconds(5000));
}

TEST(BoundedQueueTest, WithoutLingerTakesOnlyWhatIsQueued) {
  BoundedQueue<int> q(100);
  q.Push(1);
  q.Push(2);
  std::vector<int> out;
  ASSERT_TRUE(q.PopBatch(out, 10, milliseconds(100)));
  EXPECT_EQ(out, (std::vector<int>{1, 2}));
  EXPECT_EQ(q.Size(), 0u);
}

TEST(BoundedQueueTest, LingerEndsWithAPartialGroup) {
  BoundedQueue<int> q(100);
  q.Push(7);
  std::vector<int> out;
  ASSERT_TRUE(q.PopBatch(out, 10, milliseconds(100), milliseconds(20)));
  EXPECT_EQ(out, (std::vector<int>{7}));
}

TEST(BoundedQueueTest, CloseEndsTheLingerAndTheRestIsDrained) {
  BoundedQueue<int> q(100);
  q.Push(1);
  std::thread closer([&] { q.Close(); });
  std::vector<int> out;
  EXPECT_TRUE(q.PopBatch(out, 10, milliseconds(100), milliseconds(60000)));
  closer.join();
  EXPECT_EQ(out, (std::vector<int>{1}));
  EXPECT_FALSE(q.Push(2));
  out.clear();
  EXPECT_FALSE(q.PopBatch(out, 10, milliseconds(10)));
}

TEST(BoundedQueueTest, TimeoutWithNothingQueuedReturnsAnEmptyGroup) {
  BoundedQueue<int> q(4);
  std::vector<int> out;
  EXPECT_TRUE(q.PopBatch(out, 10, milliseconds(10), milliseconds(1000)));
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace strata::edge
