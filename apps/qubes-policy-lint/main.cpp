#include "policy_server/programs/programs.h"

int main(int argc, char** argv) {
    return qrexec::policy::policy_lint_main(argc, argv);
}
