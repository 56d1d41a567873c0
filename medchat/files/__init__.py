"""What an uploaded file is: its sniffed type, its metadata removed, and the neutral name a doctor
sees (SECURITY-MODEL: a doctor learns nothing of the patient through an attachment)."""
