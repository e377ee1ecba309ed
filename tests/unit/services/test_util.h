// Helpers shared by the services unit tests: temp dirs and files, parsed commands.
#pragma once

#include "services/command.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace qrexec::services::fixtures {

// A command line known to be valid (e.g. "user:cmd" with_user, or "cmd").
inline ParsedCommand parsed_command(const std::string& text, bool with_user) {
    return *parse_command(text, with_user);
}

// The service call "QUBESRPC <text> src" as user u.
inline ParsedCommand service_call(const std::string& text) {
    return *parse_command("u:QUBESRPC " + text + " src", true);
}

class TempDir {
  public:
    TempDir() {
        char templ[] = "/tmp/qrexec-svc-test-XXXXXX";
        path_ = mkdtemp(templ);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string sub(const std::string& name) const { return path_ + "/" + name; }

    std::string mkdir(const std::string& name) const {
        std::filesystem::create_directories(sub(name));
        return sub(name);
    }
    std::string write(const std::string& name, const std::string& content,
                      mode_t mode = 0644) const {
        std::ofstream(sub(name), std::ios::binary) << content;
        ::chmod(sub(name).c_str(), mode);
        return sub(name);
    }
    void symlink(const std::string& target, const std::string& name) const {
        ::symlink(target.c_str(), sub(name).c_str());
    }

  private:
    std::string path_;
};

} // namespace qrexec::services::fixtures
