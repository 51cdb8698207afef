// The core bounded queue, as the edge's ingest (Paho's callback -> pipeline) and the edge
// hub's inbox (stream reader -> handler) use it: group commits gather what arrives within the
// linger and stop as soon as a group is full; a byte bound where one item always fits; groups
// that a predicate ends; Close() wakes a waiting producer and the rest is drained.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <strata/bounded_queue.h>

#include <string>

namespace strata {
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

TEST(BoundedQueueTest, ByteBoundWaitsForSpaceButOneItemAlwaysFits) {
  BoundedQueue<std::string> q(QueueLimits{.max_items = 100, .max_bytes = 10},
                              [](const std::string& s) { return s.size(); });
  ASSERT_TRUE(q.Push(std::string(50, 'a'))) << "larger than the bound, into an empty queue";
  std::atomic<bool> pushed{false};
  std::thread producer([&] {
    pushed = q.Push("bbbb");
  });
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(pushed) << "waits while the queue holds 50 of 10 bytes";
  std::vector<std::string> out;
  ASSERT_TRUE(q.PopBatch(out, 10, milliseconds(100)));
  producer.join();
  EXPECT_TRUE(pushed);
  EXPECT_EQ(out.size(), 1u);
  // Under the bound, items queue up behind each other and leave together.
  ASSERT_TRUE(q.Push("cccc"));
  out.clear();
  ASSERT_TRUE(q.PopBatch(out, 10, milliseconds(100)));
  EXPECT_EQ(out, (std::vector<std::string>{"bbbb", "cccc"}));
}

TEST(BoundedQueueTest, APredicateEndsTheGroup) {
  BoundedQueue<int> q(100);
  for (int v : {1, 2, -1, 3, 4}) ASSERT_TRUE(q.Push(v));
  // Negative values go alone, as the hub sends a heartbeat on its own.
  auto joins = [](const int& next, std::span<const int> taken) { return next > 0 && taken.back() > 0; };
  std::vector<std::vector<int>> groups;
  for (int i = 0; i < 3; ++i) {
    std::vector<int> out;
    ASSERT_TRUE(q.PopBatch(out, 10, std::nullopt, milliseconds(0), joins));
    groups.push_back(out);
  }
  EXPECT_EQ(groups, (std::vector<std::vector<int>>{{1, 2}, {-1}, {3, 4}}));
}

TEST(BoundedQueueTest, CloseWakesAProducerWaitingForSpace) {
  BoundedQueue<int> q(1);
  ASSERT_TRUE(q.Push(1));
  std::thread closer([&] {
    std::this_thread::sleep_for(milliseconds(50));
    q.Close();  // the consumer leaves
  });
  EXPECT_FALSE(q.Push(2));
  closer.join();
  std::vector<int> out;
  EXPECT_TRUE(q.PopBatch(out, 10, std::nullopt));
  EXPECT_EQ(out, (std::vector<int>{1}));
  out.clear();
  EXPECT_FALSE(q.PopBatch(out, 10, std::nullopt)) << "closed and drained: a consumer without a timeout returns";
}

}  // namespace
}  // namespace strata
