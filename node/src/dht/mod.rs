pub mod routing;
pub mod storage;
pub mod token;
