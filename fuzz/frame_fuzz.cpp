// libFuzzer target for the one frame assembler (protocol::next_frame), the
// daemon's FrameBuffer built on it, the bounds-checked WireReader and the
// HELLO check: every endpoint's first contact with a peer's bytes.
// Input: 1 byte (chunking seed + bound selector), then a byte stream.
// Invariants: the views never leave the buffer, the frames cut whole and cut
// in chunks are the same, re-encoding the frames gives back the bytes
// consumed, no payload is over the bound, and HELLO follows its rule.
#include "daemon/frame_buffer.h"
#include "fuzz_util.h"
#include "protocol/frame.h"
#include "protocol/wire_reader.h"

#include <algorithm>
#include <vector>

using namespace qrexec;
using namespace qrexec::protocol;
using fuzz::require;

namespace {

using Frame = daemon::Frame;

struct Cut {
    std::vector<Frame> frames;
    size_t consumed = 0;
    bool too_long = false;
};

Cut cut_whole(std::span<const std::byte> bytes, size_t bound) {
    Cut cut;
    for (;;) {
        auto rest = bytes.subspan(cut.consumed);
        auto view = next_frame(rest, bound);
        if (view.header) require(rest.size() >= kHeaderSize);
        if (view.status == FrameStatus::TooLong) {
            require(view.header && view.header->len > bound);
            cut.too_long = true;
            return cut;
        }
        if (view.status != FrameStatus::Ready) {
            require(view.untrusted_payload.empty());
            return cut;
        }
        require(view.header->len <= bound);
        require(view.size == kHeaderSize + view.header->len && view.size <= rest.size());
        require(view.untrusted_payload.data() == rest.data() + kHeaderSize);
        require(view.untrusted_payload.size() == view.header->len);
        cut.frames.push_back(
            {*view.header, {view.untrusted_payload.begin(), view.untrusted_payload.end()}});
        cut.consumed += view.size;
    }
}

Cut cut_in_chunks(std::span<const std::byte> bytes, size_t bound, uint8_t seed) {
    Cut cut;
    daemon::FrameBuffer buffer;
    auto check = [bound](Header h) { return h.len <= bound; };
    bool stop = false;
    fuzz::for_each_chunk(bytes, seed, [&](std::span<const std::byte> chunk) {
        if (stop) return;
        buffer.append(chunk);
        for (;;) {
            daemon::Frame frame;
            auto status = buffer.next(frame, check);
            if (status == daemon::FrameBuffer::Status::Rejected) {
                cut.too_long = true;
                stop = true;
                return;
            }
            if (status == daemon::FrameBuffer::Status::NeedMore) return;
            cut.consumed += kHeaderSize + frame.payload.size();
            cut.frames.push_back(std::move(frame));
        }
    });
    return cut;
}

void check_hello_rules(Header header, std::span<const std::byte> payload) {
    for (auto rule : {kVchanHello, kLocalSocketHello}) {
        auto outcome = check_hello(header, payload, rule);
        if (outcome.version) {
            require(is_hello_header(header) && payload.size() == 4);
            require(*outcome.version >= rule.minimum && *outcome.version <= rule.ours);
            require(*outcome.version == std::min(outcome.peer_version, rule.ours));
            require(decode_hello(payload) == outcome.peer_version);
        } else {
            require(!outcome.error.empty());
        }
    }
}

void check_reader(std::span<const std::byte> bytes) {
    // Read the stream as a sequence of the reader's operations chosen by the
    // bytes themselves; no read may return more than what was left.
    WireReader reader(bytes);
    size_t step = 0;
    while (reader.ok() && reader.remaining() > 0 && step++ < 64) {
        size_t before = reader.remaining();
        auto op = reader.bytes(1);
        if (!op) break;
        auto selector = static_cast<uint8_t>((*op)[0]);
        switch (selector % 5) {
        case 0:
            (void)reader.u32();
            break;
        case 1: {
            auto text = reader.fixed_text(selector / 5);
            if (text)
                require(text->size() < std::max<size_t>(selector / 5, 1) &&
                        text->find('\0') == std::string_view::npos);
            break;
        }
        case 2: {
            auto text = reader.rest_as_nul_terminated(selector);
            if (text) {
                require(text->size() <= selector && text->find('\0') == std::string_view::npos);
                require(reader.remaining() == 0 && reader.expect_end());
            }
            break;
        }
        case 3: {
            auto got = reader.bytes(selector);
            if (got) require(got->size() == selector);
            break;
        }
        default:
            (void)reader.expect_end();
            break;
        }
        if (reader.ok())
            require(reader.remaining() < before);
        else
            require(reader.remaining() == 0 && reader.error() != ReadError::None);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    uint8_t seed = data[0];
    auto bytes = fuzz::as_span(data + 1, size - 1);
    // Small bounds exercise TooLong; the largest is every endpoint's ceiling.
    static constexpr size_t kBounds[] = {0, 4, 64, kMaxDataChunkV2, kMaxFramePayload};
    size_t bound = kBounds[seed % std::size(kBounds)];

    auto whole = cut_whole(bytes, bound);
    auto chunked = cut_in_chunks(bytes, bound, seed);
    require(whole.consumed == chunked.consumed && whole.too_long == chunked.too_long);
    require(whole.frames.size() == chunked.frames.size());
    std::vector<std::byte> reencoded;
    for (size_t i = 0; i < whole.frames.size(); ++i) {
        const auto& a = whole.frames[i];
        const auto& b = chunked.frames[i];
        require(a.header.type == b.header.type && a.header.len == b.header.len);
        require(a.payload == b.payload);
        auto frame = encode_frame(a.header.type, a.payload);
        reencoded.insert(reencoded.end(), frame.begin(), frame.end());
        check_hello_rules(a.header, a.payload);
    }
    require(std::equal(reencoded.begin(), reencoded.end(), bytes.begin(),
                       bytes.begin() + static_cast<ptrdiff_t>(whole.consumed)));
    check_reader(bytes);
    return 0;
}
