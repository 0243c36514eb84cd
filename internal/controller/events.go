package controller

// Event reasons, stable CamelCase: users and alerts match on them.
const (
	ReasonIPAllocated      = "IPAllocated"
	ReasonIPReassigned     = "IPReassigned"
	ReasonIPReleased       = "IPReleased"
	ReasonAllocationFailed = "AllocationFailed"
	ReasonPoolOverlap      = "PoolOverlap"
	ReasonPoolInvalid      = "PoolInvalid"
)
