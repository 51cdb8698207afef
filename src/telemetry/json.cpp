#include <strata/telemetry/json.h>

#include <string>
#include <vector>

namespace strata::telemetry {
namespace {

using nlohmann::json;

// Builds the DOM from SAX events. The stack holds the open containers; a pointer to a
// container stays valid while it is open because nothing is added to its parent meanwhile.
class BoundedBuilder final : public nlohmann::json_sax<json> {
 public:
  explicit BoundedBuilder(int max_depth) : max_depth_(max_depth) {}

  json& root() { return root_; }
  const std::string& error() const { return error_; }

  bool null() override { return Put(nullptr) != nullptr; }
  bool boolean(bool v) override { return Put(v) != nullptr; }
  bool number_integer(number_integer_t v) override { return Put(v) != nullptr; }
  bool number_unsigned(number_unsigned_t v) override { return Put(v) != nullptr; }
  bool number_float(number_float_t v, const string_t& literal) override {
    // nlohmann falls back to a double for an integer literal beyond 64 bits; that would be
    // a silent rounding.
    if (literal.find_first_of(".eE") == std::string::npos) {
      error_ = "integer " + Shorten(literal) + " does not fit in 64 bits";
      return false;
    }
    return Put(v) != nullptr;
  }
  bool string(string_t& v) override { return Put(std::move(v)) != nullptr; }
  bool binary(binary_t&) override {
    error_ = "binary values are not JSON";
    return false;
  }
  bool start_object(std::size_t) override { return Open(json::object()); }
  bool key(string_t& k) override {
    slot_ = &(*stack_.back())[k];
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return Open(json::array()); }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    // nlohmann's text already names the position; keep it, without the "[json.exception...]" tag.
    std::string what = e.what();
    if (auto close = what.find("] "); what.starts_with("[json.exception") && close != std::string::npos) {
      what = what.substr(close + 2);
    }
    error_ = what.empty() ? "invalid JSON at byte " + std::to_string(position) : what;
    return false;
  }

 private:
  static std::string Shorten(const std::string& s) { return s.size() <= 24 ? s : s.substr(0, 20) + "..."; }

  template <typename V>
  json* Put(V&& v) {
    if (stack_.empty()) {
      root_ = json(std::forward<V>(v));
      return &root_;
    }
    json* top = stack_.back();
    if (top->is_array()) {
      top->emplace_back(std::forward<V>(v));
      return &top->back();
    }
    *slot_ = json(std::forward<V>(v));
    return slot_;
  }

  bool Open(json container) {
    if (static_cast<int>(stack_.size()) >= max_depth_) {
      error_ = "JSON nested deeper than " + std::to_string(max_depth_) + " levels";
      return false;
    }
    json* placed = Put(std::move(container));
    stack_.push_back(placed);
    return true;
  }

  const int max_depth_;
  json root_;
  std::vector<json*> stack_;
  json* slot_ = nullptr;
  std::string error_;
};

}  // namespace

absl::StatusOr<nlohmann::json> ParseBoundedJson(std::string_view text, int max_depth) {
  BoundedBuilder builder(max_depth);
  const bool ok = json::sax_parse(text.begin(), text.end(), &builder, json::input_format_t::json, /*strict=*/true);
  if (!ok) {
    return absl::InvalidArgumentError(builder.error().empty() ? std::string("invalid JSON") : builder.error());
  }
  return std::move(builder.root());
}

}  // namespace strata::telemetry
