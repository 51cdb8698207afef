// main() of every test binary: runs the tests, then stops the shared PostgreSQL server (if a
// test started one) before the process exits.
#include <string>

#include <gtest/gtest.h>

#include "support/pg_server.h"

namespace {

class SharedServersEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { strata::testing::StopSharedPgServer(); }
};

}  // namespace

// More suppressions from a test program's own objects (support/paho_test_client.cpp); a weak
// reference, null where none is linked.
extern "C" __attribute__((weak)) const char* strata_test_lsan_suppressions();

// LeakSanitizer (debug builds with STRATA_SANITIZE): libpq/libpqxx 6.4 lose one PGresult when
// a query hits a connection the server has terminated, a path the storage tests take on
// purpose. The leak is inside libpq, so only allocations made by libpq are exempted.
extern "C" const char* __lsan_default_suppressions() {
  static const std::string kSuppressions =
      std::string("leak:libpq.so\n") + (strata_test_lsan_suppressions ? strata_test_lsan_suppressions() : "");
  return kSuppressions.c_str();
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new SharedServersEnvironment);  // gtest takes ownership
  return RUN_ALL_TESTS();
}
