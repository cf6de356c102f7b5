// Package integration tests the NATS helpers of the shared module
// (natsconn, stream) against an embedded nats-server. The tests live here,
// in the test kit's module, rather than beside the code, so that shared, the
// wire contract that every service and client imports, does not require
// nats-server. Tests that need no server stay in shared.
package integration
