"""PACS export: DICOM SEG and Secondary Capture objects, their transports and the outbox worker."""
