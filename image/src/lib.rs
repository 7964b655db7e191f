//! Image and snapshot service (filled by the images issue).
