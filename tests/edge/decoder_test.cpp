// The edge's payload decoder: every accepted shape, and every rejection with its reason.
#include <gtest/gtest.h>

#include "agent/decoder.h"

namespace strata::edge {
namespace {

constexpr std::int64_t kNow = 1700000000123;

class DecoderTest : public ::testing::Test {
 protected:
  DecodeResult Decode(const std::string& payload, const std::string& topic = "v1/devices/d1/telemetry") {
    DecodeResult r;
    decoder_.Decode(topic, payload, kNow, r);
    return r;
  }
  Decoder decoder_{"v1/devices", DecodeLimits{8192, 5}};
};

TEST_F(DecoderTest, FlatObjectGetsReceiveTime) {
  auto r = Decode(R"({"temperature":21.5,"count":3,"on":true,"mode":"auto"})");
  ASSERT_TRUE(r.ok) << r.detail;
  ASSERT_EQ(r.items.size(), 4u);
  for (const auto& i : r.items) {
    EXPECT_EQ(i.device_id, "d1");
    EXPECT_EQ(i.ts, kNow);
  }
  EXPECT_EQ(r.items[0].key, "count");  // nlohmann orders object keys
  EXPECT_EQ(r.items[0].value.int_value(), 3);
  EXPECT_EQ(r.items[1].value.string_value(), "auto");
  EXPECT_TRUE(r.items[2].value.bool_value());
  EXPECT_DOUBLE_EQ(r.items[3].value.double_value(), 21.5);
}

TEST_F(DecoderTest, TsValuesShapeAndArrays) {
  auto r = Decode(R"({"ts":1700000000000,"values":{"t":1.25}})");
  ASSERT_TRUE(r.ok) << r.detail;
  ASSERT_EQ(r.items.size(), 1u);
  EXPECT_EQ(r.items[0].ts, 1700000000000);
  auto a = Decode(R"([{"ts":1,"values":{"t":1}},{"t":2},{"values":{"u":3}}])");
  ASSERT_TRUE(a.ok) << a.detail;
  ASSERT_EQ(a.items.size(), 3u);
  EXPECT_EQ(a.items[0].ts, 1);
  EXPECT_EQ(a.items[1].ts, kNow);
  EXPECT_EQ(a.items[2].ts, kNow) << "values without ts get the receive time";
}

TEST_F(DecoderTest, RejectsWithReasons) {
  struct Case {
    std::string payload;
    RejectReason reason;
  } cases[] = {
      {R"({"t":)", RejectReason::kInvalidJson},
      {"not json", RejectReason::kInvalidJson},
      {R"({"t":{"x":1}})", RejectReason::kNestedObject},
      {R"({"t":[1,2]})", RejectReason::kWrongType},
      {R"({"t":null})", RejectReason::kWrongType},
      {R"(42)", RejectReason::kWrongType},
      {R"([])", RejectReason::kWrongType},
      {R"({})", RejectReason::kWrongType},
      {R"({"ts":"now","values":{"t":1}})", RejectReason::kInvalidTimestamp},
      {R"({"ts":-5,"values":{"t":1}})", RejectReason::kInvalidTimestamp},
      {R"({"ts":1.5,"values":{"t":1}})", RejectReason::kInvalidTimestamp},
      {R"({"ts":300000000000000,"values":{"t":1}})", RejectReason::kInvalidTimestamp},
      {R"({"ts":9223372036854775807,"values":{"t":1}})", RejectReason::kInvalidTimestamp},
      {R"({"ts":18446744073709551615,"values":{"t":1}})", RejectReason::kInvalidTimestamp},
      {R"({"ts":1e3,"values":{"t":1}})", RejectReason::kInvalidTimestamp},
      {R"({"u":18446744073709551615})", RejectReason::kInvalidValue},
      {R"({"u":123456789012345678901234567890})", RejectReason::kInvalidJson},
      {R"({"u":1e400})", RejectReason::kInvalidJson},
      {R"({"s":"a\u0000b"})", RejectReason::kInvalidValue},
      // JSON text is UTF-8: the parser refuses anything else, in values and in keys.
      {"{\"s\":\"\xff\xfe\"}", RejectReason::kInvalidJson},
      {"{\"k\xc3\x28\":1}", RejectReason::kInvalidJson},
      {std::string(40, '[') + std::string(40, ']'), RejectReason::kInvalidJson},
      {R"({"ts":1,"values":{"t":1},"extra":2})", RejectReason::kWrongType},
      {R"({"a":1,"b":2,"c":3,"d":4,"e":5,"f":6})", RejectReason::kTooManyKeys},
      {R"({"":1})", RejectReason::kInvalidKey},
      {std::string(R"({"s":")") + std::string(4097, 'x') + R"("})", RejectReason::kInvalidValue},
      {std::string(R"({"s":")") + std::string(9000, 'x') + R"("})", RejectReason::kOversized},
  };
  for (const auto& c : cases) {
    auto r = Decode(c.payload);
    EXPECT_FALSE(r.ok) << c.payload;
    EXPECT_EQ(r.reason, c.reason) << c.payload << " -> " << ReasonLabel(r.reason) << ": " << r.detail;
    EXPECT_FALSE(r.detail.empty());
    EXPECT_TRUE(r.items.empty());
  }
}

TEST_F(DecoderTest, TopicsAndDeviceIds) {
  EXPECT_EQ(Decode(R"({"t":1})", "v1/devices/telemetry").reason, RejectReason::kInvalidTopic);
  EXPECT_EQ(Decode(R"({"t":1})", "other/d1/telemetry").reason, RejectReason::kInvalidTopic);
  EXPECT_EQ(Decode(R"({"t":1})", "v1/devices/a/b/telemetry").reason, RejectReason::kInvalidDeviceId);
  EXPECT_EQ(Decode(R"({"t":1})", "v1/devices/" + std::string(200, 'x') + "/telemetry").reason,
            RejectReason::kInvalidDeviceId);
  auto quoted = Decode(R"({"t":1})", "v1/devices/it's \"q\"/telemetry");
  ASSERT_TRUE(quoted.ok);
  EXPECT_EQ(quoted.items[0].device_id, "it's \"q\"");
}

TEST_F(DecoderTest, BigIntegersAndAGoodMessageAfterABadOne) {
  auto big = Decode(R"({"u":9223372036854775807,"i":-9223372036854775808,"x":9007199254740993})");
  ASSERT_TRUE(big.ok) << big.detail;
  EXPECT_EQ(big.items[0].value.int_value(), INT64_MIN);
  EXPECT_EQ(big.items[1].value.int_value(), INT64_MAX);
  EXPECT_EQ(big.items[2].value.int_value(), 9007199254740993) << "no rounding through a double";
  auto typed = Decode(R"({"a":21.0,"b":1e3,"c":21,"d":-0.0})");
  ASSERT_TRUE(typed.ok) << typed.detail;
  EXPECT_TRUE(typed.items[0].value.has_double_value()) << "21.0 is a double";
  EXPECT_TRUE(typed.items[1].value.has_double_value()) << "1e3 is a double";
  EXPECT_EQ(typed.items[2].value.int_value(), 21);
  EXPECT_TRUE(typed.items[3].value.has_double_value());
  auto string_ts = Decode(R"({"ts":"1700000000000","values":{"t":1}})");
  ASSERT_TRUE(string_ts.ok) << "a ts in protobuf's int64 string form: " << string_ts.detail;
  EXPECT_EQ(string_ts.items[0].ts, 1700000000000);
  EXPECT_FALSE(string_ts.stamped_on_receipt);
  EXPECT_TRUE(Decode(R"({"t":1})").stamped_on_receipt) << "a flat object has no ts of its own";
  EXPECT_TRUE(Decode(R"([{"ts":1,"values":{"t":1}},{"values":{"u":2}}])").stamped_on_receipt);
  auto max_ts = Decode(R"({"ts":253402300799999,"values":{"t":1}})");
  EXPECT_TRUE(max_ts.ok) << "the last millisecond of 9999 is in range: " << max_ts.detail;
  EXPECT_FALSE(Decode("{").ok);
  EXPECT_TRUE(Decode(R"({"t":1})").ok) << "state does not leak between messages";
}

}  // namespace
}  // namespace strata::edge
