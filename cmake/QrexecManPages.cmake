# Manual pages: one scdoc source per page, man/<program>.<section>.scd, built
# when scdoc is installed and installed into share/man/man<section>.
find_program(QREXEC_SCDOC scdoc)
file(GLOB QREXEC_MAN_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/man/*.scd)
set(QREXEC_MAN_PAGES)
if(QREXEC_SCDOC)
  foreach(source ${QREXEC_MAN_SOURCES})
    get_filename_component(page ${source} NAME_WLE) # qrexec-agent.8
    string(REGEX REPLACE "^.*\\.([0-9])$" "\\1" section ${page})
    set(out ${CMAKE_BINARY_DIR}/man/${page})
    add_custom_command(OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
      COMMAND ${QREXEC_SCDOC} < ${source} > ${out}
      DEPENDS ${source} VERBATIM)
    list(APPEND QREXEC_MAN_PAGES ${out})
    install(FILES ${out} DESTINATION share/man/man${section})
  endforeach()
  add_custom_target(man ALL DEPENDS ${QREXEC_MAN_PAGES})
endif()

# Not repeated in the sanitizer build: nothing here depends on how programs are compiled.
if(QREXEC_TESTS AND NOT QREXEC_SANITIZE)
  # Units, pages and (when built) packages: tests/packaging/.
  add_test(NAME packaging_units_and_pages
           COMMAND /usr/bin/python3 -m pytest -q -p no:cacheprovider
                   tests/packaging/test_units.py tests/packaging/test_man_pages.py
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(packaging_units_and_pages PROPERTIES
    ENVIRONMENT "QREXEC_BIN_DIR=${CMAKE_BINARY_DIR}/install/bin;QREXEC_MAN_DIR=${CMAKE_BINARY_DIR}/man;QREXEC_BUILD_DIR=${CMAKE_BINARY_DIR}"
    TIMEOUT 300)
endif()
