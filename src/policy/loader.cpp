#include "policy/loader.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

namespace qrexec::policy {

namespace {
// A policy file larger than this is refused rather than read into memory.
constexpr size_t kMaxPolicyFileSize = 16 * 1024 * 1024;

} // namespace

std::string parent_dir(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

PathKind FsLoader::kind(const std::string& path) const {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return PathKind::Missing;
    if (S_ISREG(st.st_mode)) return PathKind::File;
    if (S_ISDIR(st.st_mode)) return PathKind::Directory;
    return PathKind::Other;
}

std::optional<std::vector<std::string>> FsLoader::list_dir(const std::string& path,
                                                           std::string* error) const {
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), ::closedir);
    if (!dir) {
        if (error) *error = "cannot list directory " + path + ": " + std::strerror(errno);
        return std::nullopt;
    }
    std::vector<std::string> names;
    errno = 0;
    while (dirent* entry = ::readdir(dir.get())) {
        std::string name = entry->d_name;
        if (name != "." && name != "..") names.push_back(std::move(name));
    }
    return names;
}

std::optional<std::string> read_file_bounded(const std::string& path, size_t max_size,
                                             std::string_view what, std::string* error) {
    std::string named = std::string(what) + path;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        if (error) *error = "cannot open " + named + ": " + std::strerror(errno);
        return std::nullopt;
    }
    std::string text;
    char buf[65536];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, static_cast<size_t>(in.gcount()));
        if (text.size() > max_size) {
            if (error) *error = (what.empty() ? "file " + path : named) + " is too large";
            return std::nullopt;
        }
    }
    if (in.bad()) {
        if (error) *error = "cannot read " + named;
        return std::nullopt;
    }
    return text;
}

std::optional<std::string> FsLoader::read_file(const std::string& path, std::string* error) const {
    return read_file_bounded(path, kMaxPolicyFileSize, "", error);
}

void MemoryLoader::add_file(const std::string& path, std::string content) {
    files_[path] = std::move(content);
    for (std::string dir = parent_dir(path); dirs_.insert(dir).second && dir != "/";)
        dir = parent_dir(dir);
}

void MemoryLoader::add_dir(const std::string& path) {
    for (std::string dir = path; dirs_.insert(dir).second && dir != "/";)
        dir = parent_dir(dir);
}

PathKind MemoryLoader::kind(const std::string& path) const {
    if (files_.count(path)) return PathKind::File;
    if (dirs_.count(path)) return PathKind::Directory;
    return PathKind::Missing;
}

std::optional<std::vector<std::string>> MemoryLoader::list_dir(const std::string& path,
                                                               std::string* error) const {
    if (!dirs_.count(path)) {
        if (error) *error = "cannot list directory " + path + ": No such file or directory";
        return std::nullopt;
    }
    std::vector<std::string> names;
    std::string prefix = path == "/" ? "/" : path + "/";
    auto child_name = [&](const std::string& full) -> std::optional<std::string> {
        if (!full.starts_with(prefix) || full.size() == prefix.size()) return std::nullopt;
        std::string rest = full.substr(prefix.size());
        if (rest.find('/') != std::string::npos) return std::nullopt;
        return rest;
    };
    for (const auto& [file, content] : files_)
        if (auto n = child_name(file)) names.push_back(*n);
    for (const auto& dir : dirs_)
        if (auto n = child_name(dir)) names.push_back(*n);
    return names;
}

std::optional<std::string> MemoryLoader::read_file(const std::string& path,
                                                   std::string* error) const {
    auto it = files_.find(path);
    if (it == files_.end()) {
        if (error) *error = "cannot open " + path + ": No such file or directory";
        return std::nullopt;
    }
    return it->second;
}

} // namespace qrexec::policy
