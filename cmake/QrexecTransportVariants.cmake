# The programs that open vchans, linked again with another transport than
# QREXEC_VCHAN's (every other object is transport-agnostic, so only the link
# differs; the backend's default_backend() object comes first and the one in
# qrexec_transport is then never pulled from the archive):
#   * xen-standin/  the Xen backend over the test stand-in of tests/xen_standin
#                   (socket build with tests): the integration tests run over it;
#   * xen/          the Xen backend over Debian's libxenvchan (socket build with
#                   tests): the real library is link-checked in CI;
#   * lab/          the socket backend (xen build): the lab's own copies, so
#                   qrexec-lab still works where the system programs speak Xen.
set(QREXEC_VCHAN_PROGRAMS
    qrexec-agent=qrexec_agent qrexec-client-vm=qrexec_client_vm qrexec-fork-server=qrexec_agent
    qrexec-daemon=qrexec_daemon qrexec-client=qrexec_client)

function(qrexec_transport_variant variant)
  foreach(entry ${QREXEC_VCHAN_PROGRAMS})
    string(REPLACE "=" ";" pair ${entry})
    list(GET pair 0 program)
    list(GET pair 1 room)
    set(target ${program}-${variant})
    add_executable(${target} ${CMAKE_SOURCE_DIR}/apps/${program}/main.cpp ${ARGN})
    target_link_libraries(${target} PRIVATE ${room})
    set_target_properties(${target} PROPERTIES OUTPUT_NAME ${program}
      RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/${variant})
    if(QREXEC_STATIC_CXX_RUNTIME)
      target_link_options(${target} PRIVATE -static-libstdc++ -static-libgcc)
    endif()
  endforeach()
endfunction()

if(QREXEC_VCHAN STREQUAL "socket" AND QREXEC_TESTS AND TARGET qrexec_vchan_xen_objs)
  add_subdirectory(${CMAKE_SOURCE_DIR}/tests/xen_standin ${CMAKE_BINARY_DIR}/xen_standin_objs)
  # The backend's own tests (the pump thread, EOF and flush at close) run in every
  # build, the sanitizer build included.
  if(TARGET unit_transport)
    target_sources(unit_transport PRIVATE $<TARGET_OBJECTS:qrexec_vchan_xen_objs>
                   $<TARGET_OBJECTS:qrexec_xen_standin_objs>)
    target_include_directories(unit_transport PRIVATE ${QREXEC_XENVCHAN_INCLUDE_DIR})
    target_compile_definitions(unit_transport PRIVATE QREXEC_XEN_STANDIN=1)
    target_link_libraries(unit_transport PRIVATE Threads::Threads)
  endif()
endif()

# The program variants over the stand-in and Debian's library: release builds only
# (the sanitizer build runs the integration suite over the socket transport).
if(QREXEC_VCHAN STREQUAL "socket" AND QREXEC_TESTS AND NOT QREXEC_SANITIZE
   AND TARGET qrexec_vchan_xen_objs)
  qrexec_transport_variant(xen-standin $<TARGET_OBJECTS:qrexec_vchan_xen_objs>
                           $<TARGET_OBJECTS:qrexec_xen_standin_objs>)
  foreach(entry ${QREXEC_VCHAN_PROGRAMS})
    string(REGEX REPLACE "=.*" "" program ${entry})
    target_link_libraries(${program}-xen-standin PRIVATE Threads::Threads)
  endforeach()
  # The other programs (policy, lab) beside them, so the directory is a whole bin dir.
  file(GLOB app_dirs LIST_DIRECTORIES true ${CMAKE_SOURCE_DIR}/apps/*)
  foreach(app_dir ${app_dirs})
    get_filename_component(app ${app_dir} NAME)
    if(NOT TARGET ${app}-xen-standin AND TARGET ${app})
      file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/xen-standin)
      # Never replaced: a reconfigure must not pull it from under a running test.
      if(NOT IS_SYMLINK ${CMAKE_BINARY_DIR}/xen-standin/${app})
        file(CREATE_LINK ${CMAKE_BINARY_DIR}/apps/${app}/${app}
             ${CMAKE_BINARY_DIR}/xen-standin/${app} SYMBOLIC)
      endif()
    endif()
  endforeach()
  # The stand-in as drop-in shared libraries (Debian's sonames), so programs built
  # against the real libxenvchan (the packages) run over it with LD_LIBRARY_PATH.
  foreach(lib xenvchan=4.17 xenstore=4)
    string(REPLACE "=" ";" pair ${lib})
    list(GET pair 0 name)
    list(GET pair 1 soversion)
    add_library(qrexec_standin_${name} SHARED ${CMAKE_SOURCE_DIR}/tests/xen_standin/standin.cpp)
    target_include_directories(qrexec_standin_${name} PRIVATE ${QREXEC_XENVCHAN_INCLUDE_DIR})
    set_target_properties(qrexec_standin_${name} PROPERTIES OUTPUT_NAME ${name}
      SOVERSION ${soversion} LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/xen-standin-lib
      UNITY_BUILD OFF)
    # The symbol versions of Debian's libraries (else ld.so warns on every start).
    target_link_options(qrexec_standin_${name} PRIVATE
      -Wl,--version-script=${CMAKE_SOURCE_DIR}/tests/xen_standin/${name}.map)
  endforeach()
  if(XENVCHAN_FOUND)
    qrexec_transport_variant(xen $<TARGET_OBJECTS:qrexec_vchan_xen_objs>)
    foreach(entry ${QREXEC_VCHAN_PROGRAMS})
      string(REGEX REPLACE "=.*" "" program ${entry})
      target_link_libraries(${program}-xen PRIVATE Threads::Threads PkgConfig::XENVCHAN)
    endforeach()
  endif()
  # The agent/daemon/client integration tests over the Xen backend (a representative
  # part of the suite: control and data vchans in every direction; the 200-call
  # soak of test_daemon_e2e stays with the socket build).
  add_test(NAME integration_xen_standin
           COMMAND /usr/bin/python3 -m pytest -q -p no:cacheprovider
                   -k "not many_parallel"
                   tests/integration/test_agent_flows.py
                   tests/integration/test_daemon_e2e.py
                   tests/integration/test_client_vm_calls.py
                   tests/integration/test_client_dom0_to_vm.py
                   tests/integration/test_fork_server_calls.py
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(integration_xen_standin PROPERTIES
    ENVIRONMENT "QREXEC_BIN_DIR=${CMAKE_BINARY_DIR}/xen-standin" TIMEOUT 900)
endif()

if(QREXEC_VCHAN STREQUAL "xen")
  qrexec_transport_variant(lab $<TARGET_OBJECTS:qrexec_vchan_socket_objs>)
endif()
