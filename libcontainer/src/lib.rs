//! libcontainer
