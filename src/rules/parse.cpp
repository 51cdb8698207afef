// The lexer and a recursive-descent parser for CEL's grammar (the CEL language definition,
// "Syntax"), with the source limits of Limits. Comprehension macros, message construction
// and optional syntax are recognised and refused as outside the subset.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "rules/ast.h"

namespace strata::rules {

namespace {

enum class Tok : std::uint8_t {
  kEnd, kIdent, kQuotedIdent, kInt, kUint, kDouble, kString, kBytes, kTrue, kFalse, kNull, kIn,
  kLParen, kRParen, kLBracket, kRBracket, kLBrace, kRBrace, kDot, kComma, kColon, kQuestion,
  kNot, kMinus, kPlus, kStar, kSlash, kPercent, kLt, kLe, kGt, kGe, kEq, kNe, kAnd, kOr,
};

struct Token {
  Tok kind = Tok::kEnd;
  Pos pos;
  std::string text;   // identifier; decoded string or bytes
  std::uint64_t u = 0;  // int / uint literal magnitude
  double d = 0;
};

[[noreturn]] void Fail(Pos pos, std::string message) {
  throw CompileError{absl::StatusCode::kInvalidArgument, pos, std::move(message)};
}
[[noreturn]] void Unsupported(Pos pos, std::string message) {
  throw CompileError{absl::StatusCode::kUnimplemented, pos, std::move(message)};
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool IsIdentStart(char c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsIdentChar(char c) { return IsIdentStart(c) || IsDigit(c); }
int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

void AppendUtf8(std::uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

std::size_t Utf8Length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n;
  std::uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  return n;
}

namespace {

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  Token Next() {
    SkipSpace();
    Token t;
    t.pos = Here();
    if (i_ >= src_.size()) return t;
    const char c = src_[i_];
    // String and bytes literals, with their r / b prefixes in either order and case.
    if (c == '"' || c == '\'' || ((c == 'r' || c == 'R' || c == 'b' || c == 'B') && StringAhead())) {
      return LexString(t);
    }
    if (IsIdentStart(c)) {
      std::size_t j = i_;
      while (j < src_.size() && IsIdentChar(src_[j])) ++j;
      t.text = std::string(src_.substr(i_, j - i_));
      Advance(j - i_);
      if (t.text == "true") t.kind = Tok::kTrue;
      else if (t.text == "false") t.kind = Tok::kFalse;
      else if (t.text == "null") t.kind = Tok::kNull;
      else if (t.text == "in") t.kind = Tok::kIn;
      else t.kind = Tok::kIdent;
      return t;
    }
    if (IsDigit(c) || (c == '.' && i_ + 1 < src_.size() && IsDigit(src_[i_ + 1]))) return LexNumber(t);
    if (c == '`') {
      // A quoted field name, as in m.`content-type`: letters, digits, _ . - / and space.
      std::size_t j = i_ + 1;
      while (j < src_.size() && (IsIdentChar(src_[j]) || src_[j] == '.' || src_[j] == '-' || src_[j] == '/' ||
                                 src_[j] == ' ')) {
        ++j;
      }
      if (j >= src_.size() || src_[j] != '`' || j == i_ + 1) Fail(t.pos, "malformed quoted field name");
      t.kind = Tok::kQuotedIdent;
      t.text = std::string(src_.substr(i_ + 1, j - i_ - 1));
      Advance(j + 1 - i_);
      return t;
    }
    auto two = [&](char second) { return i_ + 1 < src_.size() && src_[i_ + 1] == second; };
    auto op = [&](Tok k, std::size_t n) {
      t.kind = k;
      Advance(n);
      return t;
    };
    switch (c) {
      case '(': return op(Tok::kLParen, 1);
      case ')': return op(Tok::kRParen, 1);
      case '[': return op(Tok::kLBracket, 1);
      case ']': return op(Tok::kRBracket, 1);
      case '{': return op(Tok::kLBrace, 1);
      case '}': return op(Tok::kRBrace, 1);
      case '.': return op(Tok::kDot, 1);
      case ',': return op(Tok::kComma, 1);
      case ':': return op(Tok::kColon, 1);
      case '?': return op(Tok::kQuestion, 1);
      case '+': return op(Tok::kPlus, 1);
      case '-': return op(Tok::kMinus, 1);
      case '*': return op(Tok::kStar, 1);
      case '/': return op(Tok::kSlash, 1);
      case '%': return op(Tok::kPercent, 1);
      case '!': return two('=') ? op(Tok::kNe, 2) : op(Tok::kNot, 1);
      case '<': return two('=') ? op(Tok::kLe, 2) : op(Tok::kLt, 1);
      case '>': return two('=') ? op(Tok::kGe, 2) : op(Tok::kGt, 1);
      case '=':
        if (two('=')) return op(Tok::kEq, 2);
        Fail(t.pos, "unexpected '=' (equality is '==')");
      case '&':
        if (two('&')) return op(Tok::kAnd, 2);
        Fail(t.pos, "unexpected '&' (logical and is '&&')");
      case '|':
        if (two('|')) return op(Tok::kOr, 2);
        Fail(t.pos, "unexpected '|' (logical or is '||')");
      default: break;
    }
    if (static_cast<unsigned char>(c) >= 0x80) Fail(t.pos, "unexpected character outside a string literal");
    Fail(t.pos, std::string("unexpected character '") + c + "'");
  }

 private:
  Pos Here() const { return pos_; }

  void Advance(std::size_t n) {
    for (std::size_t k = 0; k < n && i_ < src_.size(); ++k) {
      const char c = src_[i_++];
      if (c == '\n') {
        ++pos_.line;
        pos_.column = 1;
      } else if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
        ++pos_.column;  // columns count code points
      }
    }
  }

  void SkipSpace() {
    while (i_ < src_.size()) {
      const char c = src_[i_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        Advance(1);
      } else if (c == '/' && i_ + 1 < src_.size() && src_[i_ + 1] == '/') {
        while (i_ < src_.size() && src_[i_] != '\n') Advance(1);
      } else {
        break;
      }
    }
  }

  bool StringAhead() const {
    std::size_t j = i_;
    for (int k = 0; k < 2 && j < src_.size(); ++k, ++j) {
      const char c = src_[j];
      if (c == '"' || c == '\'') return true;
      if (c != 'r' && c != 'R' && c != 'b' && c != 'B') return false;
    }
    return j < src_.size() && (src_[j] == '"' || src_[j] == '\'');
  }

  Token LexNumber(Token t) {
    std::size_t j = i_;
    if (src_[j] == '0' && j + 1 < src_.size() && (src_[j + 1] == 'x' || src_[j + 1] == 'X')) {
      j += 2;
      const std::size_t start = j;
      while (j < src_.size() && IsHex(src_[j])) ++j;
      if (j == start) Fail(t.pos, "hexadecimal literal without digits");
      std::uint64_t v = 0;
      for (std::size_t k = start; k < j; ++k) {
        if (v > (UINT64_MAX >> 4)) Fail(t.pos, "integer literal out of range");
        v = (v << 4) | static_cast<std::uint64_t>(HexValue(src_[k]));
      }
      return FinishInt(t, v, j);
    }
    while (j < src_.size() && IsDigit(src_[j])) ++j;
    bool is_double = false;
    if (j + 1 < src_.size() && src_[j] == '.' && IsDigit(src_[j + 1])) {
      is_double = true;
      ++j;
      while (j < src_.size() && IsDigit(src_[j])) ++j;
    }
    if (j < src_.size() && (src_[j] == 'e' || src_[j] == 'E')) {
      std::size_t k = j + 1;
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < src_.size() && IsDigit(src_[k])) {
        is_double = true;
        j = k;
        while (j < src_.size() && IsDigit(src_[j])) ++j;
      } else {
        Fail(t.pos, "exponent without digits");
      }
    }
    const std::string text(src_.substr(i_, j - i_));
    if (is_double) {
      errno = 0;
      t.d = std::strtod(text.c_str(), nullptr);
      if (errno == ERANGE && std::abs(t.d) > 1) Fail(t.pos, "double literal out of range: " + text);
      t.kind = Tok::kDouble;
      Advance(j - i_);
      return t;
    }
    std::uint64_t v = 0;
    for (char c : text) {
      const auto digit = static_cast<std::uint64_t>(c - '0');
      if (v > (UINT64_MAX - digit) / 10) Fail(t.pos, "integer literal out of range: " + text);
      v = v * 10 + digit;
    }
    return FinishInt(t, v, j);
  }

  Token FinishInt(Token t, std::uint64_t v, std::size_t j) {
    t.u = v;
    t.kind = Tok::kInt;
    if (j < src_.size() && (src_[j] == 'u' || src_[j] == 'U')) {
      t.kind = Tok::kUint;
      ++j;
    }
    if (j < src_.size() && (IsIdentChar(src_[j]) || (src_[j] == '.' && t.kind == Tok::kUint && j + 1 < src_.size() &&
                                                      IsDigit(src_[j + 1])))) {
      Fail(t.pos, "malformed number");
    }
    Advance(j - i_);
    return t;
  }

  Token LexString(Token t) {
    bool raw = false, bytes = false;
    while (src_[i_] != '"' && src_[i_] != '\'') {
      const char p = src_[i_];
      if (p == 'r' || p == 'R') raw = true;
      else bytes = true;
      Advance(1);
    }
    const char quote = src_[i_];
    const bool triple = i_ + 2 < src_.size() && src_[i_ + 1] == quote && src_[i_ + 2] == quote;
    Advance(triple ? 3 : 1);
    std::string out;
    while (true) {
      if (i_ >= src_.size()) Fail(t.pos, "unterminated string literal");
      const char c = src_[i_];
      if (c == quote && (!triple || (i_ + 2 < src_.size() && src_[i_ + 1] == quote && src_[i_ + 2] == quote))) {
        Advance(triple ? 3 : 1);
        break;
      }
      if (!triple && (c == '\n' || c == '\r')) Fail(t.pos, "newline in a string literal (use ''' or \"\"\")");
      if (c == '\\' && !raw) {
        Escape(out, bytes);
        continue;
      }
      if (raw && c == '\\' && i_ + 1 < src_.size() && src_[i_ + 1] == quote && !triple) {
        // In a raw string a backslash still keeps the quote from ending it, and both stay.
        out.push_back(c);
        out.push_back(quote);
        Advance(2);
        continue;
      }
      const std::size_t n = Utf8Length(src_, i_);
      if (n == 0) Fail(Here(), "invalid UTF-8 in a string literal");
      out.append(src_.substr(i_, n));
      Advance(n);
    }
    t.kind = bytes ? Tok::kBytes : Tok::kString;
    t.text = std::move(out);
    return t;
  }

  void Escape(std::string& out, bool bytes) {
    const Pos at = Here();
    if (i_ + 1 >= src_.size()) Fail(at, "unterminated escape sequence");
    const char e = src_[i_ + 1];
    auto simple = [&](char c) {
      out.push_back(c);
      Advance(2);
    };
    switch (e) {
      case 'a': return simple('\a');
      case 'b': return simple('\b');
      case 'f': return simple('\f');
      case 'n': return simple('\n');
      case 'r': return simple('\r');
      case 't': return simple('\t');
      case 'v': return simple('\v');
      case '\\': return simple('\\');
      case '\'': return simple('\'');
      case '"': return simple('"');
      case '`': return simple('`');
      case '?': return simple('?');
      default: break;
    }
    std::size_t digits = 0;
    int base = 16;
    if (e == 'x' || e == 'X') digits = 2;
    else if (e == 'u') digits = 4;
    else if (e == 'U') digits = 8;
    else if (e >= '0' && e <= '3') digits = 3, base = 8;
    else Fail(at, std::string("invalid escape sequence '\\") + e + "'");
    const std::size_t start = base == 8 ? i_ + 1 : i_ + 2;
    if (start + digits > src_.size()) Fail(at, "truncated escape sequence");
    std::uint32_t cp = 0;
    for (std::size_t k = start; k < start + digits; ++k) {
      const char c = src_[k];
      if (base == 8 ? (c < '0' || c > '7') : !IsHex(c)) Fail(at, "invalid digit in an escape sequence");
      cp = cp * static_cast<std::uint32_t>(base) + static_cast<std::uint32_t>(HexValue(c));
    }
    Advance(start + digits - i_);
    const bool byte_escape = e == 'x' || e == 'X' || base == 8;
    if (bytes && byte_escape) {
      out.push_back(static_cast<char>(cp));
      return;
    }
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) Fail(at, "escape sequence is not a Unicode scalar value");
    if (bytes && !byte_escape) Fail(at, "\\u and \\U escapes are not allowed in a bytes literal");
    AppendUtf8(cp, out);
  }

  std::string_view src_;
  std::size_t i_ = 0;
  Pos pos_;
};

const std::set<std::string, std::less<>>& Reserved() {
  static const std::set<std::string, std::less<>> words = {
      "as",  "break", "const",   "continue", "else",   "for", "function", "if",    "import",
      "let", "loop",  "package", "namespace", "return", "var", "void",     "while"};
  return words;
}

class Parser {
 public:
  Parser(std::string_view src, const Limits& limits) : lex_(src), limits_(limits) { tok_ = lex_.Next(); }

  NodePtr ParseAll() {
    NodePtr e = Expr();
    if (tok_.kind != Tok::kEnd) Fail(tok_.pos, "unexpected " + Describe(tok_) + " after the expression");
    return e;
  }

 private:
  struct Depth {
    explicit Depth(Parser& p) : p(p) {
      if (++p.depth_ > p.limits_.max_depth) Fail(p.tok_.pos, "expression nested too deeply");
    }
    ~Depth() { --p.depth_; }
    Parser& p;
  };

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case Tok::kEnd: return "end of input";
      case Tok::kIdent: return "'" + t.text + "'";
      case Tok::kInt: case Tok::kUint: case Tok::kDouble: return "number";
      case Tok::kString: case Tok::kBytes: return "string literal";
      default: return "token";
    }
  }

  void Take() { tok_ = lex_.Next(); }
  bool Accept(Tok k) {
    if (tok_.kind != k) return false;
    Take();
    return true;
  }
  void Expect(Tok k, const char* what) {
    if (!Accept(k)) Fail(tok_.pos, std::string("expected ") + what + ", found " + Describe(tok_));
  }

  NodePtr Make(NodeKind kind, Pos pos) {
    if (++nodes_ > limits_.max_nodes) Fail(pos, "expression has too many parts");
    auto n = std::make_shared<Node>();
    n->kind = kind;
    n->pos = pos;
    return n;
  }
  NodePtr Call(Pos pos, std::string name, std::vector<NodePtr> args) {
    NodePtr n = Make(NodeKind::kCall, pos);
    n->name = std::move(name);
    n->args = std::move(args);
    return Tall(n);
  }
  // Sets a node's height from its children's; the checker and the evaluator recurse that
  // deep, so it is bounded like the nesting.
  NodePtr Tall(NodePtr n) {
    for (const auto& a : n->args) n->height = std::max(n->height, a->height + 1);
    if (n->height > limits_.max_height) {
      Fail(n->pos, "expression is too deep (a chain of more than " + std::to_string(limits_.max_height) + " operations)");
    }
    return n;
  }

  NodePtr Expr() {
    Depth d(*this);
    NodePtr cond = Or();
    if (tok_.kind != Tok::kQuestion) return cond;
    const Pos pos = tok_.pos;
    Take();
    NodePtr a = Or();
    Expect(Tok::kColon, "':'");
    NodePtr b = Expr();
    return Call(pos, "_?_:_", {cond, a, b});
  }

  NodePtr Or() {
    NodePtr left = And();
    while (tok_.kind == Tok::kOr) {
      const Pos pos = tok_.pos;
      Take();
      left = Call(pos, "_||_", {left, And()});
    }
    return left;
  }

  NodePtr And() {
    NodePtr left = Relation();
    while (tok_.kind == Tok::kAnd) {
      const Pos pos = tok_.pos;
      Take();
      left = Call(pos, "_&&_", {left, Relation()});
    }
    return left;
  }

  NodePtr Relation() {
    NodePtr left = Addition();
    while (true) {
      const char* name = nullptr;
      switch (tok_.kind) {
        case Tok::kLt: name = "_<_"; break;
        case Tok::kLe: name = "_<=_"; break;
        case Tok::kGt: name = "_>_"; break;
        case Tok::kGe: name = "_>=_"; break;
        case Tok::kEq: name = "_==_"; break;
        case Tok::kNe: name = "_!=_"; break;
        case Tok::kIn: name = "@in"; break;
        default: return left;
      }
      const Pos pos = tok_.pos;
      Take();
      left = Call(pos, name, {left, Addition()});
    }
  }

  NodePtr Addition() {
    NodePtr left = Multiplication();
    while (tok_.kind == Tok::kPlus || tok_.kind == Tok::kMinus) {
      const char* name = tok_.kind == Tok::kPlus ? "_+_" : "_-_";
      const Pos pos = tok_.pos;
      Take();
      left = Call(pos, name, {left, Multiplication()});
    }
    return left;
  }

  NodePtr Multiplication() {
    NodePtr left = Unary();
    while (tok_.kind == Tok::kStar || tok_.kind == Tok::kSlash || tok_.kind == Tok::kPercent) {
      const char* name = tok_.kind == Tok::kStar ? "_*_" : (tok_.kind == Tok::kSlash ? "_/_" : "_%_");
      const Pos pos = tok_.pos;
      Take();
      left = Call(pos, name, {left, Unary()});
    }
    return left;
  }

  NodePtr Unary() {
    if (tok_.kind == Tok::kNot) {
      Depth d(*this);
      const Pos pos = tok_.pos;
      Take();
      return Call(pos, "!_", {Unary()});
    }
    if (tok_.kind == Tok::kMinus) {
      Depth d(*this);
      const Pos pos = tok_.pos;
      Take();
      // A minus sign directly before a number is part of the literal (CEL's grammar), so that
      // -9223372036854775808 is an int.
      if (tok_.kind == Tok::kInt || tok_.kind == Tok::kDouble) return Member(NegativeLiteral(pos));
      return Call(pos, "-_", {Unary()});
    }
    return Member(Primary());
  }

  NodePtr NegativeLiteral(Pos pos) {
    NodePtr n = Make(NodeKind::kLiteral, pos);
    if (tok_.kind == Tok::kDouble) {
      n->literal = Value::Double(-tok_.d);
    } else {
      if (tok_.u > std::uint64_t{1} << 63) Fail(pos, "integer literal out of range");
      n->literal = Value::Int(tok_.u == std::uint64_t{1} << 63 ? INT64_MIN : -static_cast<std::int64_t>(tok_.u));
    }
    Take();
    return n;
  }

  std::vector<NodePtr> Args(Tok close, const char* what) {
    std::vector<NodePtr> args;
    if (Accept(close)) return args;
    while (true) {
      args.push_back(Expr());
      if (Accept(close)) return args;
      Expect(Tok::kComma, "','");
      if (Accept(close)) return args;  // a trailing comma
      (void)what;
    }
  }

  NodePtr Member(NodePtr operand) {
    while (true) {
      if (tok_.kind == Tok::kDot) {
        const Pos pos = tok_.pos;
        Take();
        if (tok_.kind == Tok::kQuestion) Unsupported(pos, "optional field selection (.?) is not in the subset");
        if (tok_.kind != Tok::kIdent && tok_.kind != Tok::kQuotedIdent) {
          Fail(tok_.pos, "expected a field name after '.', found " + Describe(tok_));
        }
        const bool quoted = tok_.kind == Tok::kQuotedIdent;
        std::string field = tok_.text;
        Take();
        if (tok_.kind == Tok::kLParen && !quoted) {
          Take();
          std::vector<NodePtr> args{operand};
          for (auto& a : Args(Tok::kRParen, "')'")) args.push_back(std::move(a));
          operand = MemberCall(pos, std::move(field), std::move(args));
        } else if (tok_.kind == Tok::kLBrace && IsQualifiedName(*operand)) {
          Unsupported(pos, "message construction is not in the subset");
        } else {
          NodePtr n = Make(NodeKind::kSelect, pos);
          n->name = std::move(field);
          n->args = {operand};
          operand = Tall(n);
        }
      } else if (tok_.kind == Tok::kLBracket) {
        const Pos pos = tok_.pos;
        Take();
        if (tok_.kind == Tok::kQuestion) Unsupported(pos, "optional indexing ([?) is not in the subset");
        NodePtr index = Expr();
        Expect(Tok::kRBracket, "']'");
        operand = Call(pos, "_[_]", {operand, index});
      } else {
        return operand;
      }
    }
  }

  static bool IsQualifiedName(const Node& n) {
    if (n.kind == NodeKind::kIdent) return true;
    return n.kind == NodeKind::kSelect && IsQualifiedName(*n.args[0]);
  }

  NodePtr MemberCall(Pos pos, std::string name, std::vector<NodePtr> args) {
    static const std::set<std::string, std::less<>> macros = {"all", "exists", "exists_one", "map", "filter",
                                                             "transformList", "transformMap"};
    if (macros.count(name) > 0 && args.size() >= 3 && args[1]->kind == NodeKind::kIdent) {
      Unsupported(pos, "the " + name + "() macro is a loop; loops are not in the subset");
    }
    if (name == "bind" && args[0]->kind == NodeKind::kIdent && args[0]->name == "cel") {
      Unsupported(pos, "cel.bind() is not in the subset");
    }
    NodePtr n = Call(pos, std::move(name), std::move(args));
    n->member_call = true;
    return n;
  }

  NodePtr Primary() {
    const Pos pos = tok_.pos;
    switch (tok_.kind) {
      case Tok::kInt: {
        if (tok_.u > static_cast<std::uint64_t>(INT64_MAX)) Fail(pos, "integer literal out of range");
        NodePtr n = Make(NodeKind::kLiteral, pos);
        n->literal = Value::Int(static_cast<std::int64_t>(tok_.u));
        Take();
        return n;
      }
      case Tok::kUint: return Literal(pos, Value::Uint(tok_.u));
      case Tok::kDouble: return Literal(pos, Value::Double(tok_.d));
      case Tok::kString: return Literal(pos, Value::String(tok_.text));
      case Tok::kBytes: return Literal(pos, Value::BytesOf(tok_.text));
      case Tok::kTrue: return Literal(pos, Value::Bool(true));
      case Tok::kFalse: return Literal(pos, Value::Bool(false));
      case Tok::kNull: return Literal(pos, Value::Null());
      case Tok::kLParen: {
        Take();
        NodePtr e = Expr();
        Expect(Tok::kRParen, "')'");
        return e;
      }
      case Tok::kLBracket: {
        Take();
        NodePtr n = Make(NodeKind::kList, pos);
        if (tok_.kind == Tok::kQuestion) Unsupported(tok_.pos, "optional list elements are not in the subset");
        n->args = Args(Tok::kRBracket, "']'");
        return Tall(n);
      }
      case Tok::kLBrace: return MapLiteral(pos);
      case Tok::kDot:
      case Tok::kIdent: {
        if (tok_.kind == Tok::kDot) {
          Take();
          if (tok_.kind != Tok::kIdent) Fail(tok_.pos, "expected an identifier after a leading '.'");
        }
        std::string name = tok_.text;
        if (Reserved().count(name) > 0) Fail(pos, "'" + name + "' is a reserved word");
        Take();
        if (tok_.kind == Tok::kLParen) {
          Take();
          return GlobalCall(pos, std::move(name), Args(Tok::kRParen, "')'"));
        }
        if (tok_.kind == Tok::kLBrace) Unsupported(pos, "message construction is not in the subset");
        NodePtr n = Make(NodeKind::kIdent, pos);
        n->name = std::move(name);
        return n;
      }
      default: Fail(pos, "unexpected " + Describe(tok_));
    }
  }

  NodePtr Literal(Pos pos, Value v) {
    NodePtr n = Make(NodeKind::kLiteral, pos);
    n->literal = std::move(v);
    Take();
    return n;
  }

  NodePtr MapLiteral(Pos pos) {
    Take();
    NodePtr n = Make(NodeKind::kMap, pos);
    if (Accept(Tok::kRBrace)) return n;
    while (true) {
      if (tok_.kind == Tok::kQuestion) Unsupported(tok_.pos, "optional map entries are not in the subset");
      n->args.push_back(Expr());
      Expect(Tok::kColon, "':'");
      n->args.push_back(Expr());
      if (Accept(Tok::kRBrace)) return Tall(n);
      Expect(Tok::kComma, "','");
      if (Accept(Tok::kRBrace)) return Tall(n);
    }
  }

  NodePtr GlobalCall(Pos pos, std::string name, std::vector<NodePtr> args) {
    if (name == "has") {
      if (args.size() != 1 || args[0]->kind != NodeKind::kSelect) {
        Fail(pos, "has() takes one field selection, as in has(m.f)");
      }
      NodePtr sel = args[0];
      sel->test_only = true;
      return sel;
    }
    return Call(pos, std::move(name), std::move(args));
  }

  Lexer lex_;
  Limits limits_;
  Token tok_;
  std::size_t depth_ = 0;
  std::size_t nodes_ = 0;
};

}  // namespace

NodePtr Parse(std::string_view source, const Limits& limits) {
  if (source.size() > limits.max_source_bytes) {
    Fail(Pos{}, "expression is " + std::to_string(source.size()) + " bytes; the limit is " +
                    std::to_string(limits.max_source_bytes));
  }
  Parser p(source, limits);
  return p.ParseAll();
}

}  // namespace strata::rules
