// make_db.go writes a tiny trivy vulnerability database (schema 2) for the integration tests.
//
// No real database can be downloaded on the reference machine, so the DB-present path of
// factory.scan.TrivyScanner is tested against this one: two invented advisories for packages of the
// Debian bookworm minbase fixture. Their ids are in the year 2099 so that nobody takes them for
// real findings. The layout (buckets and JSON values) is trivy-db's, as read by trivy 0.76:
//
//	"debian 12" / <source package> / <vulnerability id> -> {"FixedVersion": ...}
//	"vulnerability" / <vulnerability id>                -> {"Title", "Severity", "VendorSeverity", ...}
//	"data-source" / "debian 12"                         -> {"ID", "Name", "URL"}
//
// Regenerate (Debian packages golang-go and golang-github-coreos-bbolt-dev):
//
//	cd tests/data/trivy-db && GO111MODULE=off GOPATH=/usr/share/gocode go run make_db.go db
//	cd tests/data/trivy-db && GO111MODULE=off GOPATH=/usr/share/gocode go run make_db.go db-next next
//
// The "next" variant is the database a day later: the same two advisories plus a third, CRITICAL
// CVE-2099-0004 in tar (fixed in 9.9.9), disclosed after an image was published (``factory scan``).
package main

import (
	"encoding/json"
	"log"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

type advisory struct {
	FixedVersion string `json:",omitempty"`
}

type vulnerability struct {
	Title          string
	Description    string
	Severity       string
	VendorSeverity map[string]int
	References     []string
}

func main() {
	dir := os.Args[1]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	path := filepath.Join(dir, "trivy.db")
	_ = os.Remove(path)
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		log.Fatal(err)
	}
	// trivy-db's severities: 0 unknown, 1 low, 2 medium, 3 high, 4 critical.
	advisories := map[string]map[string]advisory{
		"dpkg":       {"CVE-2099-0001": {FixedVersion: "9.9.9"}},
		"base-files": {"CVE-2099-0002": {}}, // no fix yet
	}
	next := len(os.Args) > 2 && os.Args[2] == "next"
	day := 0
	if next {
		advisories["tar"] = map[string]advisory{"CVE-2099-0004": {FixedVersion: "9.9.9"}}
		day = 1
	}
	vulns := map[string]vulnerability{
		"CVE-2099-0001": {Title: "factory test fixture: invented critical flaw in dpkg",
			Description: "Not a real vulnerability: written by tests/data/trivy-db/make_db.go.",
			Severity: "CRITICAL", VendorSeverity: map[string]int{"debian": 4}},
		"CVE-2099-0002": {Title: "factory test fixture: invented high flaw in base-files",
			Description: "Not a real vulnerability: written by tests/data/trivy-db/make_db.go.",
			Severity: "HIGH", VendorSeverity: map[string]int{"debian": 3}},
		"CVE-2099-0004": {Title: "factory test fixture: invented critical flaw in tar, disclosed later",
			Description: "Not a real vulnerability: written by tests/data/trivy-db/make_db.go.",
			Severity: "CRITICAL", VendorSeverity: map[string]int{"debian": 4}},
	}
	if !next {
		delete(vulns, "CVE-2099-0004")
	}
	err = db.Update(func(tx *bolt.Tx) error {
		release, err := tx.CreateBucket([]byte("debian 12"))
		if err != nil {
			return err
		}
		for pkg, byID := range advisories {
			b, err := release.CreateBucket([]byte(pkg))
			if err != nil {
				return err
			}
			for id, adv := range byID {
				if err := put(b, id, adv); err != nil {
					return err
				}
			}
		}
		vb, err := tx.CreateBucket([]byte("vulnerability"))
		if err != nil {
			return err
		}
		for id, v := range vulns {
			if err := put(vb, id, v); err != nil {
				return err
			}
		}
		ds, err := tx.CreateBucket([]byte("data-source"))
		if err != nil {
			return err
		}
		return put(ds, "debian 12", map[string]string{"ID": "debian", "Name": "Debian Security Tracker",
			"URL": "https://salsa.debian.org/security-tracker-team/security-tracker"})
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}
	// Fixed times keep the committed files byte-for-byte reproducible.
	at := time.Date(2026, 11, 28+day, 0, 0, 0, 0, time.UTC)
	meta, _ := json.Marshal(map[string]any{"Version": 2, "NextUpdate": at.Add(24 * time.Hour),
		"UpdatedAt": at, "DownloadedAt": at})
	if err := os.WriteFile(filepath.Join(dir, "metadata.json"), meta, 0o644); err != nil {
		log.Fatal(err)
	}
}

func put(b *bolt.Bucket, key string, value any) error {
	data, err := json.Marshal(value)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}
