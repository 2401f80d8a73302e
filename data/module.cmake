# data/module.cmake: build steps of the data module beyond the glob
# (included by the top-level CMakeLists.txt after baton_data is defined).
#
# Audio (issue 15): `baton prepare audio` reads audio with libsndfile
# (WAV, FLAC, Ogg, ... whatever the installed library reads) and computes
# log-mel features with FFTW's single-precision real FFT (fftw3f).
# Both are Debian packages (libsndfile1-dev, libfftw3-dev) installed by
# launch/install-deps.sh.
pkg_check_modules(SNDFILE REQUIRED IMPORTED_TARGET sndfile)
pkg_check_modules(FFTW3F REQUIRED IMPORTED_TARGET fftw3f)
target_link_libraries(baton_data PUBLIC PkgConfig::SNDFILE PkgConfig::FFTW3F)
