// libFuzzer target: the policy-daemon socket request parser (fed in chunks, as the
// daemon reads it) and the policy.EvalSimple / EvalGUI input parser.
#include "policy_server/request.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace qrexec::policy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    // The first byte picks a chunk size so partial lines are exercised.
    size_t chunk = size ? (static_cast<unsigned char>(input[0]) % 17) + 1 : 1;
    SocketRequestParser parser;
    for (size_t off = 0; off < input.size(); off += chunk)
        if (parser.feed(input.substr(off, chunk)) != SocketRequestParser::State::NeedMore) break;
    if (parser.state() == SocketRequestParser::State::NeedMore) parser.finish();
    (void)parse_socket_request(input);
    (void)parse_eval_request(input, "policy.EvalSimple");
    (void)parse_eval_request(input, "policy.EvalGUI");
    return 0;
}
