// Boost.JSON's implementation, compiled once for every target (header-only
// use of Debian's libboost1.81-dev: exactly one translation unit includes it).
#include <boost/json/src.hpp>
