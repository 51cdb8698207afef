// Linked into the test programs that drive a broker through Paho's C library as a test
// client (a publisher or a subscriber of the test itself, not strata-edge's MqttClient).
//
// Debian 12's Paho C (1.3.12) sometimes keeps one internal buffer alive after
// MQTTAsync_destroy (upstream eclipse-paho/paho.mqtt.c#1474 and relatives: commands or writes
// still queued inside the library when a client is destroyed are not freed). LeakSanitizer
// then fails a test program whose every test passed, at its exit, depending on timing. The
// suppression below applies only to the test programs that link this file: strata-edge,
// strata-cloud and the MqttClient test stay fully checked, and tests/lsan.supp stays free of
// Paho.
//
// support/test_main.cpp adds these to the LeakSanitizer suppressions it hands the sanitizer
// runtime (__lsan_default_suppressions), in addition to the file of LSAN_OPTIONS.
extern "C" const char* strata_test_lsan_suppressions() { return "leak:libpaho-mqtt3as\n"; }
