#include "client/options.h"
#include "client/qubesd.h"
#include "io/fd.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

using namespace qrexec::client;

namespace {

ParsedOptions parse(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/qrexec-client");
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    return parse_client_options(static_cast<int>(args.size()), argv.data());
}

// One-shot fake qubesd: records the request, answers `reply`.
class FakeQubesd {
  public:
    explicit FakeQubesd(std::string reply) {
        char templ[] = "/tmp/qrexec-qubesd-test-XXXXXX";
        dir_ = mkdtemp(templ);
        path_ = dir_ + "/qubesd.sock";
        listener_ = qrexec::io::Fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
        EXPECT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        EXPECT_EQ(listen(listener_.get(), 1), 0);
        setenv("QREXEC_QUBESD_SOCKET", path_.c_str(), 1);
        thread_ = std::thread([this, reply] {
            qrexec::io::Fd conn(accept(listener_.get(), nullptr, nullptr));
            char buffer[4096];
            ssize_t n;
            while ((n = read(conn.get(), buffer, sizeof buffer)) > 0)
                request_.append(buffer, static_cast<size_t>(n));
            qrexec::io::write_all(conn.get(), reply);
        });
    }
    ~FakeQubesd() {
        if (thread_.joinable()) thread_.join();
        unsetenv("QREXEC_QUBESD_SOCKET");
        unlink(path_.c_str());
        rmdir(dir_.c_str());
    }
    std::string request() {
        thread_.join();
        return request_;
    }

  private:
    std::string dir_, path_, request_;
    qrexec::io::Fd listener_;
    std::thread thread_;
};

} // namespace

TEST(ClientOptions, Defaults) {
    auto r = parse({"-d", "work", "user:cmd"});
    ASSERT_TRUE(r.options);
    EXPECT_EQ(r.options->program, "qrexec-client");
    EXPECT_EQ(r.options->domain, "work");
    EXPECT_EQ(r.options->command, "user:cmd");
    EXPECT_EQ(r.options->timeout_seconds, 10);
    EXPECT_EQ(r.options->socket_dir, "/var/run/qubes");
    EXPECT_FALSE(r.options->prefix_data);
}

TEST(ClientOptions, AllValues) {
    auto r = parse({"-dwork", "-w5", "-p", "DATA", "-t", "-T", "-E", "-k", "--socket-dir", "/s",
                    "cmd", "ignored"});
    ASSERT_TRUE(r.options);
    EXPECT_EQ(r.options->timeout_seconds, 5);
    EXPECT_EQ(r.options->prefix_data, "DATA");
    EXPECT_TRUE(r.options->filter_stdout && r.options->filter_stderr);
    EXPECT_TRUE(r.options->no_exit_code && r.options->kill);
    EXPECT_EQ(r.options->socket_dir, "/s");
    EXPECT_EQ(r.options->command, "cmd");
}

TEST(ClientOptions, ConnectRequest) {
    auto r = parse({"-d", "dom0", "-c", "SOCKET5,work,42", "QUBESRPC a b"});
    ASSERT_TRUE(r.options && r.options->connect);
    EXPECT_EQ(r.options->connect->request_id, "SOCKET5");
    EXPECT_EQ(r.options->connect->source_name, "work");
    EXPECT_EQ(r.options->connect->source_id, 42);
    EXPECT_EQ(parse({"-d", "dom0", "-c", "a,b,2147483648", "x"}).exit_code, 1);
    EXPECT_EQ(parse({"-d", "dom0", "-c", "a,@adminvm,3", "x"}).exit_code, 1);
}

TEST(ClientOptions, Dom0Names) {
    EXPECT_TRUE(is_dom0_name("dom0"));
    EXPECT_TRUE(is_dom0_name("@adminvm"));
    EXPECT_TRUE(is_dom0_name("uuid:00000000-0000-0000-0000-000000000000"));
    EXPECT_FALSE(is_dom0_name("uuid:00000000-0000-0000-0000-000000000001"));
    EXPECT_FALSE(is_dom0_name("dom01"));
}

TEST(Qubesd, RequestFormat) {
    using namespace std::string_literals;
    EXPECT_EQ(qubesd_request("admin.vm.Kill", "", "work", ""), "admin.vm.Kill+ dom0 name work\0"s);
    EXPECT_EQ(qubesd_request("admin.vm.CreateDisposable", "", "uuid:x", "uuid"),
              "admin.vm.CreateDisposable+ dom0 name uuid:x\0uuid"s);
    EXPECT_EQ(qubesd_request("admin.vm.Start", "a", "@dispvm", ""),
              "admin.vm.Start+a dom0 keyword dispvm\0"s);
}

TEST(Qubesd, CallSuccessAndError) {
    using namespace std::string_literals;
    {
        FakeQubesd fake("0\0disp123"s);
        auto reply = qubesd_call("admin.vm.CreateDisposable", "tmpl");
        ASSERT_TRUE(reply);
        EXPECT_TRUE(reply->ok);
        EXPECT_EQ(reply->value, "disp123");
        EXPECT_EQ(fake.request(), "admin.vm.CreateDisposable+ dom0 name tmpl\0"s);
    }
    {
        FakeQubesd fake("2\0QubesVMNotHaltedError\0details\0"s);
        auto reply = qubesd_call("admin.vm.Start", "work");
        ASSERT_TRUE(reply);
        EXPECT_FALSE(reply->ok);
        EXPECT_EQ(reply->exception_type, "QubesVMNotHaltedError");
    }
    {
        FakeQubesd fake("garbage");
        EXPECT_FALSE(qubesd_call("admin.vm.Start", "work"));
    }
}
