// Unit tests of the service-layer pieces that need no database: value conversion, batch
// validation and page tokens.
#include <gtest/gtest.h>

#include <limits>

#include "services/edge_hub.h"
#include "services/page_token.h"
#include "services/telemetry_service.h"

namespace strata::services {
namespace {

TEST(FromJsonValueTest, NumbersStayDoubles) {
  // The deprecated json_values form: a google.protobuf.Value number is a double, and the
  // caller's type is kept (an integral 42.0 is not turned into an int64).
  google::protobuf::Value v;
  v.set_number_value(42);
  EXPECT_TRUE(FromJsonValue(v, "f")->has_double_value());
  EXPECT_DOUBLE_EQ(FromJsonValue(v, "f")->double_value(), 42);
  v.set_number_value(21.5);
  EXPECT_DOUBLE_EQ(FromJsonValue(v, "f")->double_value(), 21.5);
  v.set_number_value(1e300);
  EXPECT_TRUE(FromJsonValue(v, "f")->has_double_value());
  v.set_bool_value(true);
  EXPECT_TRUE(FromJsonValue(v, "f")->bool_value());
  v.set_string_value("on");
  EXPECT_EQ(FromJsonValue(v, "f")->string_value(), "on");
}

TEST(FromJsonValueTest, RejectsNullListsAndObjectsNamingTheField) {
  google::protobuf::Value v;
  v.set_null_value(google::protobuf::NULL_VALUE);
  auto s = FromJsonValue(v, "points[0].values.t").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("points[0].values.t"), std::string_view::npos);
  v.mutable_list_value();
  EXPECT_FALSE(FromJsonValue(v, "f").ok());
  v.mutable_struct_value();
  EXPECT_FALSE(FromJsonValue(v, "f").ok());
  v.set_string_value(std::string("a\0b", 3));
  EXPECT_FALSE(FromJsonValue(v, "f").ok()) << "the telemetry model's string rules apply to this form too";
  v.set_number_value(std::numeric_limits<double>::quiet_NaN());
  EXPECT_FALSE(FromJsonValue(v, "f").ok());
}

v1::TelemetryBatch Batch(std::uint64_t first, std::uint64_t last, std::vector<std::uint64_t> seqs) {
  v1::TelemetryBatch b;
  b.set_first_seq(first);
  b.set_last_seq(last);
  for (auto s : seqs) {
    auto* r = b.add_readings();
    r->set_seq(s);
    r->set_device_id("d1");
    r->set_key("t");
    r->set_ts(1000);
    r->mutable_value()->set_double_value(1);
  }
  return b;
}

TEST(ValidateBatchFrameTest, AcceptsGapsRejectsDisorder) {
  EXPECT_TRUE(ValidateBatchFrame(Batch(1, 10, {1, 2, 5, 10})).ok());
  EXPECT_FALSE(ValidateBatchFrame(Batch(0, 1, {1})).ok());
  EXPECT_FALSE(ValidateBatchFrame(Batch(5, 4, {})).ok());
  EXPECT_FALSE(ValidateBatchFrame(Batch(1, 10, {2, 2})).ok());
  EXPECT_FALSE(ValidateBatchFrame(Batch(1, 10, {11})).ok());
  EXPECT_FALSE(ValidateBatchFrame(Batch(1, 18446744073709551615ull, {1})).ok());
  // The content of a reading is not the frame's business: it is refused on its own.
  auto b = Batch(1, 1, {1});
  b.mutable_readings(0)->clear_value();
  EXPECT_TRUE(ValidateBatchFrame(b).ok());
}

TEST(CheckEdgeReadingTest, OneRuleForEveryField) {
  auto b = Batch(1, 6, {1, 2, 3, 4, 5, 6});
  EXPECT_TRUE(CheckEdgeReading(b.readings(0)).ok());
  b.mutable_readings(1)->clear_value();
  b.mutable_readings(2)->set_device_id("a/b");
  b.mutable_readings(3)->set_ts(300000000000000);
  b.mutable_readings(4)->mutable_value()->set_string_value(std::string("a\0b", 3));
  b.mutable_readings(5)->set_key("");
  EXPECT_EQ(CheckEdgeReading(b.readings(1)).reason, telemetry::Reason::kInvalidValue);
  EXPECT_EQ(CheckEdgeReading(b.readings(2)).reason, telemetry::Reason::kInvalidKey);
  EXPECT_EQ(CheckEdgeReading(b.readings(3)).reason, telemetry::Reason::kInvalidTimestamp);
  EXPECT_EQ(CheckEdgeReading(b.readings(4)).reason, telemetry::Reason::kInvalidValue);
  EXPECT_EQ(CheckEdgeReading(b.readings(5)).reason, telemetry::Reason::kInvalidKey);
}

TEST(PageTokenTest, RoundTripsAndRejectsForeignTokens) {
  EXPECT_EQ(*DecodeIdToken(EncodeIdToken("dev'1")), "dev'1");
  auto c = DecodeTelemetryToken(EncodeTelemetryToken({1700000000000, "a:b"}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->ts, 1700000000000);
  EXPECT_EQ(c->key, "a:b");
  EXPECT_EQ(DecodeIdToken("garbage!").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(DecodeTelemetryToken(EncodeIdToken("x")).ok());
}

}  // namespace
}  // namespace strata::services
