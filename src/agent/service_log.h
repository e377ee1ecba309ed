// Copies a service's stderr to the system log, one record per line, tagged
// "<service>[+<arg>]-<source>" like upstream's `logger -t` child (AGENT.md §2.6),
// without a logger process per call.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace qrexec::agent {

class LineSplitter {
  public:
    using Sink = std::function<void(std::string_view line)>;
    // Lines longer than this are cut into several records.
    static constexpr size_t kMaxLine = 4096;

    explicit LineSplitter(Sink sink) : sink_(std::move(sink)) {}
    LineSplitter(const LineSplitter&) = delete;
    LineSplitter& operator=(const LineSplitter&) = delete;
    ~LineSplitter() { flush(); }

    void feed(std::span<const std::byte> data);
    // Emits a trailing partial line.
    void flush();

  private:
    Sink sink_;
    std::string partial_;
};

// A sink writing to syslog (facility user, priority notice, as logger does).
LineSplitter::Sink syslog_sink(const std::string& tag);

} // namespace qrexec::agent
