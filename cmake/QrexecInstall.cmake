# Install layout. Development (default): every program in <prefix>/bin, as the
# tests and the lab expect. System (-DQREXEC_SYSTEM_LAYOUT=ON, what the Debian
# packages use with --prefix /usr): upstream qrexec's paths.
option(QREXEC_SYSTEM_LAYOUT "Install with upstream qrexec's system paths" OFF)
set(QREXEC_SYSCONFDIR "/etc" CACHE PATH "Configuration root of the system layout")
set(QREXEC_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE PATH
    "systemd system units (relative: under the prefix)")

# program -> directory under the prefix in the system layout (default: bin).
set(QREXEC_SYSTEM_DESTINATIONS
    qrexec-agent=lib/qubes
    qrexec-daemon=sbin
    # The lab and its copies of the programs live together (it finds them next
    # to itself); bin/qrexec-lab is a symlink.
    qrexec-lab=lib/qrexec-cpp/lab)

function(qrexec_program_destination program out)
  set(dest bin)
  if(QREXEC_SYSTEM_LAYOUT)
    foreach(entry ${QREXEC_SYSTEM_DESTINATIONS})
      if(entry MATCHES "^${program}=(.*)$")
        set(dest ${CMAKE_MATCH_1})
      endif()
    endforeach()
  endif()
  set(${out} ${dest} PARENT_SCOPE)
endfunction()

function(qrexec_install_program target)
  qrexec_program_destination(${target} dest)
  install(TARGETS ${target} RUNTIME DESTINATION ${dest})
endfunction()

# Everything besides the programs; called once the app targets exist.
function(qrexec_install_system_files)
  if(NOT QREXEC_SYSTEM_LAYOUT)
    return()
  endif()
  set(etc ${QREXEC_SYSCONFDIR})
  install(DIRECTORY DESTINATION ${etc}/qubes-rpc)
  install(DIRECTORY DESTINATION ${etc}/qubes/rpc-config)
  install(DIRECTORY DESTINATION ${etc}/qubes/policy.d)
  install(FILES ${CMAKE_SOURCE_DIR}/etc/pam.d/qrexec DESTINATION ${etc}/pam.d)
  install(FILES ${CMAKE_SOURCE_DIR}/systemd/qubes-qrexec-agent.service
                ${CMAKE_SOURCE_DIR}/systemd/qubes-qrexec-policy-daemon.service
          DESTINATION ${QREXEC_SYSTEMD_UNIT_DIR})
  # Upstream's compatibility path for callers of the VM-side client.
  install(CODE "
    set(root \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}\")
    file(MAKE_DIRECTORY \"\${root}/lib/qubes\" \"\${root}/bin\")
    file(CREATE_LINK ../../bin/qrexec-client-vm \"\${root}/lib/qubes/qrexec-client-vm\" SYMBOLIC)
    file(CREATE_LINK ../lib/qrexec-cpp/lab/qrexec-lab \"\${root}/bin/qrexec-lab\" SYMBOLIC)")
  # The lab's programs: the socket copies of a xen build, else links to the system ones.
  set(lab lib/qrexec-cpp/lab)
  foreach(program qrexec-agent qrexec-client-vm qrexec-fork-server qrexec-daemon qrexec-client)
    if(TARGET ${program}-lab)
      install(TARGETS ${program}-lab RUNTIME DESTINATION ${lab})
    else()
      qrexec_program_destination(${program} dest)
      install(CODE "file(CREATE_LINK ../../../${dest}/${program}
        \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${lab}/${program}\" SYMBOLIC)")
    endif()
  endforeach()
  foreach(program qrexec-policy-daemon qrexec-policy-exec qrexec-policy qubes-policy-lint
                  qrexec-policy-graph)
    install(CODE "file(CREATE_LINK ../../../bin/${program}
      \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${lab}/${program}\" SYMBOLIC)")
  endforeach()
endfunction()
