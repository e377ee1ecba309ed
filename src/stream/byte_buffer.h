// A growable byte buffer that never zero-fills: storage is allocated for
// overwrite (new std::byte[n], no value-initialisation), so only the bytes that
// are actually written touch memory. std::vector::resize would clear every new
// byte first (a 64 KiB frame buffer costs ~16 page faults per call that way).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>

namespace qrexec::stream {

class ByteBuffer {
  public:
    ByteBuffer() = default;
    explicit ByteBuffer(size_t capacity) { reserve(capacity); }

    std::byte* data() { return storage_.get(); }
    const std::byte* data() const { return storage_.get(); }
    size_t size() const { return size_; }
    size_t capacity() const { return capacity_; }
    bool empty() const { return size_ == 0; }
    std::span<std::byte> span() { return {storage_.get(), size_}; }
    std::span<const std::byte> span() const { return {storage_.get(), size_}; }

    void clear() { size_ = 0; }

    // Keeps the first size() bytes; new bytes are uninitialised.
    void reserve(size_t capacity) {
        if (capacity <= capacity_) return;
        std::unique_ptr<std::byte[]> grown(new std::byte[capacity]);
        if (size_) std::memcpy(grown.get(), storage_.get(), size_);
        storage_ = std::move(grown);
        capacity_ = capacity;
    }

    // Sets the size; bytes beyond the old size are uninitialised (to be overwritten).
    void resize_for_overwrite(size_t size) {
        if (size > capacity_) reserve(std::max(size, 2 * capacity_));
        size_ = size;
    }

    void append(std::span<const std::byte> bytes) {
        if (bytes.empty()) return;
        size_t old = size_;
        resize_for_overwrite(old + bytes.size());
        std::memcpy(storage_.get() + old, bytes.data(), bytes.size());
    }

  private:
    std::unique_ptr<std::byte[]> storage_;
    size_t size_ = 0;
    size_t capacity_ = 0;
};

} // namespace qrexec::stream
