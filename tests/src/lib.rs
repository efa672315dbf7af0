//! Test support shared by the property tests, the scenario suite and the fuzz targets.
