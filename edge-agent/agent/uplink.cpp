#include "agent/uplink.h"

#include <condition_variable>
#include <random>

#include <grpcpp/grpcpp.h>
#include <strata/channel.h>
#include <spdlog/spdlog.h>

#include "strata/v1/edgesync.grpc.pb.h"

namespace strata::edge {
namespace {

const char* GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    default: return "ERROR";
  }
}

}  // namespace

Uplink::Uplink(UplinkOptions options, Buffer& buffer, MetricsRegistry& metrics)
    : options_(std::move(options)),
      buffer_(buffer),
      batch_max_(options_.batch_max),
      linger_ms_(options_.linger.count()),
      acked_total_(metrics.GetCounter("strata_edge_readings_acked_total", "Readings the cloud acknowledged as stored")),
      refused_total_(metrics.GetCounter("strata_edge_readings_refused_total",
                                        "Readings the cloud refused (not stored; see the agent's log for why)")),
      buffer_losses_(metrics.GetCounter("strata_edge_buffer_losses_total",
                                        "Times the cloud held seqs this buffer never handed out: the buffer was "
                                        "lost or replaced, and readings pending in it then are gone")),
      batches_sent_(metrics.GetCounter("strata_edge_batches_sent_total", "Batches sent to the cloud")),
      connects_total_(metrics.GetCounter("strata_edge_uplink_connects_total", "Successful EdgeSync handshakes")),
      ignored_messages_(metrics.GetCounter("strata_edge_uplink_messages_ignored_total",
                                           "Messages from the cloud this edge does not handle (a newer cloud's kinds)")),
      connected_gauge_(metrics.GetGauge("strata_edge_uplink_connected", "1 while the EdgeSync stream is up")) {}

Uplink::~Uplink() { Stop(); }

void Uplink::SetBatching(std::size_t batch_max, std::chrono::milliseconds linger) {
  batch_max_ = std::max<std::size_t>(1, batch_max);
  linger_ms_ = linger.count();
}

Uplink::BufferLoss Uplink::LastBufferLoss() const {
  std::lock_guard lock(mu_);
  return buffer_loss_;
}

std::string Uplink::LastRefusal() const {
  std::lock_guard lock(mu_);
  return last_refusal_;
}

std::string Uplink::LastError() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

void Uplink::Start() { thread_ = std::thread([this] { Run(); }); }

void Uplink::Stop() {
  stop_.Stop();
  {
    std::lock_guard lock(mu_);
    if (active_context_) static_cast<grpc::ClientContext*>(active_context_)->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void Uplink::Run() {
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.backoff_min;
  while (!stop_.stopped()) {
    const auto started = std::chrono::steady_clock::now();
    Session();
    if (stop_.stopped()) break;
    // A session that lived a while resets the backoff: the cloud was reachable.
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(5)) backoff = options_.backoff_min;
    std::uniform_int_distribution<long> jitter(backoff.count() / 2, backoff.count());
    stop_.WaitFor(std::chrono::milliseconds(jitter(rng)));
    backoff = std::min(options_.backoff_max, backoff * 2);
  }
}

void Uplink::Session() {
  auto channel = MakeChannel({.address = options_.cloud_address, .max_receive_bytes = kUplinkMaxReceiveBytes});
  auto stub = v1::EdgeSync::NewStub(channel);
  grpc::ClientContext ctx;
  {
    std::lock_guard lock(mu_);
    if (stop_.stopped()) return;
    active_context_ = &ctx;
  }
  struct Clear {
    Uplink* u;
    ~Clear() {
      std::lock_guard lock(u->mu_);
      u->active_context_ = nullptr;
    }
  } clear{this};

  auto stream = stub->Connect(&ctx);
  v1::EdgeMessage out;
  out.mutable_hello()->set_edge_id(options_.edge_id);
  const std::uint32_t offered = !options_.on_config   ? 1
                                : !options_.commands ? 2
                                : !options_.twins    ? 3
                                : !options_.rules    ? 5
                                                     : kEdgeProtocolVersion;
  out.mutable_hello()->set_protocol_version(offered);
  v1::CloudMessage in;
  if (!stream->Write(out) || !stream->Read(&in) || !in.has_welcome()) {
    auto status = stream->Finish();
    // Refused by the cloud (not merely unreachable): say why, once per distinct reason.
    const std::string why = std::string(GrpcCodeName(status.error_code())) + ": " + status.error_message();
    std::lock_guard lock(mu_);
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE && why != last_error_) {
      spdlog::warn("uplink: the cloud at {} refused the session: {}", options_.cloud_address, why);
    } else {
      spdlog::debug("uplink: cannot reach {}: {}", options_.cloud_address, why);
    }
    last_error_ = why;
    return;
  }
  const std::uint64_t mark = in.welcome().high_water_mark();
  cloud_mark_ = mark;
  // A cloud of version 1 leaves the field at 1; no answer at all is version 1 too.
  const std::uint32_t version = std::max<std::uint32_t>(1, std::min(in.welcome().protocol_version(), offered));
  if (version < offered && protocol_version_.load() != version) {
    spdlog::warn("uplink: the cloud at {} speaks EdgeSync version {} only: telemetry is synced, but {}",
                 options_.cloud_address, version,
                 version < 2   ? "config revisions and commands are not received (this edge runs on its last "
                                 "applied revision)"
                 : version < 3 ? "commands are not received and device twins are not synced"
                 : version < 4 ? "device twins are not synced (reported properties wait at the edge)"
                 : version < 5 ? "managed settings are not received (the agent keeps the ones it runs)"
                               : "edge rules are not received and their alarms wait at the edge (the agent runs the "
                                 "rules it has)");
  }
  protocol_version_ = version;
  if (const std::uint64_t last = buffer_.LastSeq(); mark > last) {
    // The cloud stored seqs this buffer never handed out: this is not the buffer that sent
    // them (deleted, truncated, restored from an old copy, or another gateway running with
    // this edge id). Whatever the lost one held unacknowledged is gone; say so loudly.
    buffer_losses_.Inc();
    {
      std::lock_guard lock(mu_);
      ++buffer_loss_.times;
      buffer_loss_.detected_at = std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
      buffer_loss_.cloud_mark = mark;
      buffer_loss_.local_last_seq = last;
    }
    spdlog::error(
        "uplink: BUFFER LOST: the cloud holds readings of edge {} up to seq {}, but this buffer has handed out seqs "
        "only up to {}. The buffer was deleted, truncated or replaced since, or another gateway runs with this edge "
        "id; readings it held that the cloud had not acknowledged are lost (how many cannot be known here). Pending "
        "readings are renumbered above {} and sent. See docs/operations.md, \"A lost edge buffer\".",
        options_.edge_id, mark, last, mark);
  }
  if (auto s = buffer_.RebaseAbove(mark); !s.ok()) {
    // Acknowledging up to the mark now would delete pending readings the cloud never got:
    // keep them, and try again at the next connection.
    spdlog::error("uplink: cannot renumber the buffer above the cloud's mark {}: {}; keeping its readings", mark,
                  s.ToString());
    ctx.TryCancel();
    stream->Finish();
    return;
  }
  if (version >= 6 && options_.rules) {
    if (auto s = options_.rules->RebaseAbove(in.welcome().alarm_mark()); !s.ok()) {
      // Sending now would have the cloud take new alarms for ones it has: try again later.
      spdlog::error("uplink: cannot renumber the alarm outbox above the cloud's alarm mark {}: {}",
                    in.welcome().alarm_mark(), s.ToString());
      ctx.TryCancel();
      stream->Finish();
      return;
    }
  }
  if (auto n = buffer_.AckUpTo(mark); n.ok() && *n > 0) {
    spdlog::info("uplink: cloud already has {} buffered readings (mark {})", *n, mark);
    acked_total_.Inc(*n);
  }
  connects_total_.Inc();
  connected_ = true;
  connected_gauge_.Set(1);
  spdlog::info("uplink: connected to {} as {}, cloud mark {}", options_.cloud_address, options_.edge_id, mark);

  std::mutex wmu;
  std::condition_variable wcv;
  std::size_t inflight = 0;      // guarded by wmu
  bool broken = false;           // guarded by wmu
  std::string goodbye;           // guarded by wmu: why the cloud ended the stream, if it said
  std::vector<v1::ConfigAck> config_acks;  // guarded by wmu: answers for the writer to send
  CommandOutbox* const commands = version >= 3 ? options_.commands : nullptr;
  std::int64_t reports_sent = 0;  // writer only: the outbox's reports sent on this stream
  Twins* const twins = version >= 4 ? options_.twins : nullptr;
  std::int64_t twins_sent = 0;    // writer only: the twins' reported documents sent on this stream
  EdgeRules* const rules = version >= 6 ? options_.rules : nullptr;
  std::int64_t alarms_sent = 0;   // writer only: the rules' alarm transitions sent on this stream
  auto wake_writer = [&] {
    {
      std::lock_guard lock(wmu);
      wcv.notify_all();
    }
    buffer_.Interrupt();
  };
  if (commands) commands->SetReportListener(wake_writer);
  if (twins) twins->SetReportListener(wake_writer);
  if (rules) rules->SetReportListener(wake_writer);
  struct ClearListener {
    CommandOutbox* c;
    Twins* t;
    EdgeRules* r;
    ~ClearListener() {
      if (c) c->SetReportListener(nullptr);
      if (t) t->SetReportListener(nullptr);
      if (r) r->SetReportListener(nullptr);
    }
  } clear_listener{commands, twins, rules};
  // The one reader of the stream: it dispatches every kind of message the cloud sends; the
  // handlers run here, and only this loop's writer (below) writes to the stream.
  auto on_ack = [&](const v1::BatchAck& ack) {
    cloud_mark_ = ack.high_water_mark();
    if (const auto refused = ack.refused(); refused > 0) {
      // Refused readings are not stored and never will be: they are acknowledged (and
      // dropped from the buffer) with the batch, counted, and the reason logged.
      refused_ += refused;
      refused_total_.Inc(refused);
      spdlog::warn("uplink: the cloud refused {} reading(s) of batch ..{}: {}", refused, ack.last_seq(), ack.refusal());
      std::lock_guard lock(mu_);
      last_refusal_ = ack.refusal();
    }
    auto n = buffer_.AckUpTo(ack.last_seq());
    if (n.ok()) {
      acked_total_.Inc(*n);
    } else {
      spdlog::error("uplink: {}", n.status().ToString());
    }
    std::lock_guard lock(wmu);
    if (inflight > 0) --inflight;
    wcv.notify_all();
  };
  std::thread reader([&] {
    v1::CloudMessage msg;
    bool told_unknown = false;
    while (stream->Read(&msg)) {
      switch (msg.kind_case()) {
        case v1::CloudMessage::kAck:
          on_ack(msg.ack());
          break;
        case v1::CloudMessage::kGoodbye: {
          std::lock_guard lock(wmu);
          goodbye = std::string(GrpcCodeName(static_cast<grpc::StatusCode>(msg.goodbye().code()))) + ": " +
                    msg.goodbye().message();
          break;
        }
        case v1::CloudMessage::kHeartbeat:
          break;  // the cloud's answer to ours: the link is alive
        case v1::CloudMessage::kConfig: {
          if (!options_.on_config || version < 2) {
            ignored_messages_.Inc();
            break;
          }
          // Applied (durably) before the answer is queued: nothing is acked before it is on disk.
          auto ack = options_.on_config(msg.config(), version);
          if (!ack.ok()) {
            // Not stored here: say nothing, and reconnect so that the cloud sends it again.
            ctx.TryCancel();
            break;
          }
          std::lock_guard lock(wmu);
          config_acks.push_back(*std::move(ack));
          wcv.notify_all();
          break;
        }
        case v1::CloudMessage::kCommand:
        case v1::CloudMessage::kCancelCommand:
        case v1::CloudMessage::kCommandUpdateAck: {
          if (!commands) {
            ignored_messages_.Inc();
            break;
          }
          absl::Status s;
          if (msg.has_command()) {
            s = commands->Take(msg.command());  // stored before it is reported SENT
          } else if (msg.has_cancel_command()) {
            s = commands->Cancel(msg.cancel_command().command_id());
          } else {
            commands->Acked(msg.command_update_ack());
          }
          if (!s.ok()) {
            // Not stored here: reconnect, so that the cloud sends it again.
            spdlog::error("uplink: cannot store a command: {}", s.ToString());
            ctx.TryCancel();
          }
          break;
        }
        case v1::CloudMessage::kTwinReportedAck:
          if (!twins) {
            ignored_messages_.Inc();
            break;
          }
          twins->Acked(msg.twin_reported_ack());
          break;
        case v1::CloudMessage::kAlarmAck:
          if (!rules) {
            ignored_messages_.Inc();
            break;
          }
          rules->Acked(msg.alarm_ack());
          break;
        case v1::CloudMessage::kWelcome:
        case v1::CloudMessage::KIND_NOT_SET:
          // A second Welcome, or a kind this edge does not know (a newer cloud): nothing to
          // act on; counted, and said once per session.
          ignored_messages_.Inc();
          if (!told_unknown) {
            told_unknown = true;
            spdlog::warn("uplink: the cloud sent a message this edge does not handle ({}); ignored",
                         msg.has_welcome() ? "a second welcome" : "unknown kind");
          }
          break;
      }
    }
    std::lock_guard lock(wmu);
    broken = true;
    wcv.notify_all();
  });

  std::uint64_t next = mark;
  bool write_failed = false;  // a failed write means the call is over: Finish() tells why
  // When a store could not be read, its reports wait a second (the cursor stays, so none is
  // skipped) while telemetry goes on; said once per stream.
  auto reports_retry_at = std::chrono::steady_clock::time_point{};
  bool told_read_failure = false;
  auto reports_due = [&](const auto* source, std::int64_t sent) {
    return source && source->LastReportSeq() > sent && std::chrono::steady_clock::now() >= reports_retry_at;
  };
  // Writes what `source` holds above the cursor `sent` (at most 256) and moves the cursor past
  // what went; false when a write failed.
  auto send_reports = [&](auto& source, std::int64_t& sent, auto field) {
    const std::int64_t last = source.LastReportSeq();
    auto reports = source.ReportsAfter(sent, 256);
    if (!reports.ok()) {
      reports_retry_at = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      if (!told_read_failure) {
        told_read_failure = true;
        spdlog::error("uplink: cannot read reports to send (retried each second): {}", reports.status().ToString());
      }
      return true;
    }
    // None left above the cursor (acked meanwhile): nothing up to `last` needs sending.
    if (reports->empty()) sent = std::max(sent, last);
    for (auto& [seq, report] : *reports) {
      out.Clear();
      *(out.*field)() = std::move(report);
      if (!stream->Write(out)) {
        write_failed = true;
        return false;
      }
      sent = seq;
    }
    return true;
  };
  // A heartbeat at once and then every interval, with or without data: it keeps an idle link
  // honest and tells the cloud this edge's lag.
  auto last_heartbeat = std::chrono::steady_clock::now() - options_.heartbeat;
  while (!stop_.stopped()) {
    if (std::chrono::steady_clock::now() - last_heartbeat >= options_.heartbeat) {
      out.Clear();
      auto* hb = out.mutable_heartbeat();
      hb->set_sent_at(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count());
      hb->set_pending_readings(buffer_.Count());
      hb->set_oldest_pending_age_ms(static_cast<std::int64_t>(buffer_.OldestAgeSeconds() * 1000));
      if (!stream->Write(out)) {
        write_failed = true;
        break;
      }
      last_heartbeat = std::chrono::steady_clock::now();
    }
    {
      std::unique_lock lock(wmu);
      wcv.wait_for(lock, std::chrono::milliseconds(200), [&] {
        return broken || stop_.stopped() || inflight < options_.window || !config_acks.empty() ||
               reports_due(commands, reports_sent) || reports_due(twins, twins_sent) ||
               reports_due(rules, alarms_sent);
      });
      if (broken) break;
      // The outbox's reports go first too (they are small, and bounded per round), and so do
      // the devices' reported documents (one per device, however often it reported).
      if (reports_due(commands, reports_sent)) {
        lock.unlock();
        if (!send_reports(*commands, reports_sent, &v1::EdgeMessage::mutable_command_update)) break;
        continue;
      }
      if (reports_due(twins, twins_sent)) {
        lock.unlock();
        if (!send_reports(*twins, twins_sent, &v1::EdgeMessage::mutable_twin_reported)) break;
        continue;
      }
      if (reports_due(rules, alarms_sent)) {
        lock.unlock();
        if (!send_reports(*rules, alarms_sent, &v1::EdgeMessage::mutable_alarm)) break;
        continue;
      }
      if (!config_acks.empty()) {
        // Answers to config revisions go first; they do not count against the batch window.
        std::vector<v1::ConfigAck> acks;
        acks.swap(config_acks);
        lock.unlock();
        for (auto& ack : acks) {
          out.Clear();
          *out.mutable_config_ack() = std::move(ack);
          if (!stream->Write(out)) {
            write_failed = true;
            break;
          }
        }
        if (write_failed) break;
        continue;
      }
      if (inflight >= options_.window) continue;
    }
    buffer_.WaitForData(next, std::chrono::milliseconds(200));
    if (stop_.stopped()) break;
    const std::size_t batch_max = batch_max_.load();
    auto readings = buffer_.ReadAfter(next, batch_max);
    if (!readings.ok()) {
      spdlog::error("uplink: {}", readings.status().ToString());
      break;
    }
    if (readings->size() < batch_max && !readings->empty()) {
      // Linger for a fuller batch, once, then read only what came after what we have.
      const std::uint64_t have = readings->back().seq();
      buffer_.WaitForData(have, Linger());
      if (auto more = buffer_.ReadAfter(have, batch_max - readings->size()); more.ok()) {
        for (auto& r : *more) readings->push_back(std::move(r));
      }
    }
    out.Clear();
    if (readings->empty()) continue;
    {
      auto* batch = out.mutable_batch();
      batch->set_first_seq(readings->front().seq());
      batch->set_last_seq(readings->back().seq());
      batch->mutable_readings()->Reserve(static_cast<int>(readings->size()));
      for (auto& r : *readings) *batch->add_readings() = std::move(r);
      next = batch->last_seq();
      std::lock_guard lock(wmu);
      ++inflight;
    }
    if (!stream->Write(out)) {
      write_failed = true;
      break;
    }
    batches_sent_.Inc();
  }
  connected_ = false;
  connected_gauge_.Set(0);
  bool cloud_ended;
  {
    std::lock_guard lock(wmu);
    cloud_ended = broken || write_failed;
  }
  // When the cloud ended the stream, its status is on the way (or already here): Finish()
  // returns it once the reader is done. When this side ends it, do not wait on a peer that
  // may be gone. Either way unacknowledged batches stay in the buffer and are sent again on
  // the next connection.
  if (!cloud_ended) {
    stream->WritesDone();
    ctx.TryCancel();
  }
  reader.join();
  // A Read() that failed locally (a message that did not parse) leaves the call open, and
  // Finish() would then wait for a cloud that waits for us: end it. The status of a call the
  // cloud already finished is not changed by this.
  ctx.TryCancel();
  auto status = stream->Finish();
  if (!stop_.stopped()) {
    std::string why = std::string(GrpcCodeName(status.error_code())) + ": " + status.error_message();
    {
      std::lock_guard lock(wmu);
      if (!goodbye.empty()) why = goodbye;  // the cloud's own words beat CANCELLED
    }
    spdlog::warn("uplink: stream to {} ended: {}", options_.cloud_address, why);
    std::lock_guard lock(mu_);
    last_error_ = why;
  }
}

}  // namespace strata::edge
