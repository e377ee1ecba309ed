// Helpers shared by the services unit tests: temp dirs and files.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace qrexec::services::testing {

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

} // namespace qrexec::services::testing
