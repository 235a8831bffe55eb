# `cmake --install build` lays out a production host's files where the systemd units, the
# config's defaults and kilnctl look for them (docs/operations.md). The nginx site is rendered
# from its template at install time by the admin (nginx/kiln.conf says how).
install(TARGETS kiln-api kiln-worker kilnctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS scripts/kiln-status scripts/kiln-worker-ctl
        DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(DIRECTORY sql/ DESTINATION ${CMAKE_INSTALL_DATADIR}/kiln/sql
        FILES_MATCHING PATTERN "*.sql")
install(DIRECTORY converters/ DESTINATION ${CMAKE_INSTALL_DATADIR}/kiln/converters
        FILES_MATCHING PATTERN "*.toml")
install(DIRECTORY nginx/static/ DESTINATION ${CMAKE_INSTALL_DATADIR}/kiln/static)
install(FILES nginx/kiln.conf nginx/kiln-locations.conf.in
        DESTINATION ${CMAKE_INSTALL_DATADIR}/kiln/nginx)
install(FILES fcgi/kiln-api.service fcgi/kiln-api.socket worker/kiln-worker.service
              worker/kiln-worker@.service ctl/kiln-purge.service ctl/kiln-purge.timer
        DESTINATION lib/systemd/system)
install(FILES etc/kiln.toml.example DESTINATION ${CMAKE_INSTALL_DOCDIR})
