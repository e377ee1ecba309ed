// The example lab (examples/lab), compiled into qrexec-lab for `demo`.
#pragma once

#include <string>

namespace qrexec::lab {

// Writes the example lab's files under `dir` (service programs executable).
bool write_embedded_example(const std::string& dir);

} // namespace qrexec::lab
