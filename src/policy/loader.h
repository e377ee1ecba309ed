// File access for the policy parser, behind an interface so the parser can be tested
// (and fuzzed) entirely in memory.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace qrexec::policy {

enum class PathKind { Missing, File, Directory, Other };

// The directory part of a path
// ("a" -> ".", "/a" -> "/", "/a/b" -> "/a").
std::string parent_dir(const std::string& path);

// Reads a whole file of at most max_size bytes; nullopt + *error when it cannot be
// opened or read or is larger. `what` goes before the path in the messages ("cannot
// open <what><path>: ..."; "" reads "file <path> is too large").
std::optional<std::string> read_file_bounded(const std::string& path, size_t max_size,
                                             std::string_view what, std::string* error);

class Loader {
  public:
    virtual ~Loader() = default;
    // Follows symlinks, like stat(2).
    virtual PathKind kind(const std::string& path) const = 0;
    // Entry names (no "." / ".."), unsorted; nullopt + *error on failure.
    virtual std::optional<std::vector<std::string>> list_dir(const std::string& path,
                                                             std::string* error) const = 0;
    virtual std::optional<std::string> read_file(const std::string& path,
                                                 std::string* error) const = 0;
};

// The real file system.
class FsLoader final : public Loader {
  public:
    PathKind kind(const std::string& path) const override;
    std::optional<std::vector<std::string>> list_dir(const std::string& path,
                                                     std::string* error) const override;
    std::optional<std::string> read_file(const std::string& path,
                                         std::string* error) const override;
};

// An in-memory tree: files by absolute path; directories are implied by file paths
// and can be added empty.
class MemoryLoader final : public Loader {
  public:
    void add_file(const std::string& path, std::string content);
    void add_dir(const std::string& path);
    PathKind kind(const std::string& path) const override;
    std::optional<std::vector<std::string>> list_dir(const std::string& path,
                                                     std::string* error) const override;
    std::optional<std::string> read_file(const std::string& path,
                                         std::string* error) const override;

  private:
    std::map<std::string, std::string> files_;
    std::set<std::string> dirs_;
};

} // namespace qrexec::policy
