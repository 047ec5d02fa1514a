use super::*;

const NODE: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const SECRET: &[u8] = b"0123456789abcdef-flsignal";

fn secret() -> TurnSecret {
    TurnSecret::from_file_contents(SECRET).unwrap()
}

fn node() -> NodeId {
    NODE.parse().unwrap()
}

/// The password Python's `hmac` computes for the same secret and username:
/// `base64.b64encode(hmac.new(b"0123456789abcdef-flsignal",
/// b"1700003600:8a88…6f5c", hashlib.sha1).digest())`.
#[test]
fn passwords_match_a_known_hmac_sha1_implementation() {
    let credential = secret().issue(&node(), 1_700_003_600);
    assert_eq!(credential.username, format!("1700003600:{NODE}"));
    assert_eq!(credential.password, "NMttHA1r7MueHjkCbQiIBgq/dMk=");
    assert_eq!(credential.expires, 1_700_003_600);
}

/// A short secret and a username with a millisecond timestamp, also from
/// Python's `hmac`: any username and any key length hash alike.
#[test]
fn any_username_hashes_as_python_does() {
    let secret = TurnSecret(b"north".to_vec().into());
    assert_eq!(
        secret.password_for("1433895918506:my_username"),
        "Gx/rOncp1ZXBdeBo0S3RrYQnHDA="
    );
}

#[test]
fn a_fresh_credential_verifies_until_it_expires() {
    let secret = secret();
    let credential = secret.issue(&node(), 2_000);
    let user = secret
        .verify(&credential.username, &credential.password, 1_999)
        .unwrap();
    assert_eq!(
        user,
        CredentialUser {
            node: node(),
            expires: 2_000
        }
    );
    assert_eq!(
        secret.verify(&credential.username, &credential.password, 2_000),
        Err(CredentialError::Expired {
            expired: 2_000,
            now: 2_000
        })
    );
    assert_eq!(
        secret.check_username(&credential.username, 5_000).unwrap_err().label(),
        "expired"
    );
}

#[test]
fn a_wrong_hmac_is_refused() {
    let secret = secret();
    let credential = secret.issue(&node(), 2_000);
    let other = TurnSecret::from_file_contents(b"another secret of enough bytes").unwrap();
    let forged = other.issue(&node(), 2_000);
    assert_eq!(forged.username, credential.username);
    for password in [forged.password.as_str(), "", "not base64!", "AAAA"] {
        assert_eq!(
            secret.verify(&credential.username, password, 1_000),
            Err(CredentialError::WrongPassword),
            "{password:?}"
        );
    }
    // A later expiry under the same password is a different username.
    let stretched = format!("3000:{NODE}");
    assert_eq!(
        secret.verify(&stretched, &credential.password, 1_000),
        Err(CredentialError::WrongPassword)
    );
}

#[test]
fn malformed_usernames_are_refused() {
    let secret = secret();
    let long = format!("1:{}", "a".repeat(MAX_USERNAME_BYTES));
    for username in [
        "",
        "alice",
        NODE,
        &format!(":{NODE}"),
        &format!("+2000:{NODE}"),
        &format!("-2000:{NODE}"),
        &format!("20x0:{NODE}"),
        &format!("99999999999999999999999:{NODE}"),
        "2000:8a88",
        &format!("2000:{NODE}:extra"),
        &long,
    ] {
        assert_eq!(
            secret.check_username(username, 1_000),
            Err(CredentialError::Malformed),
            "{username:?}"
        );
    }
    // Upper-case hex names the same node.
    let upper = format!("2000:{}", NODE.to_ascii_uppercase());
    assert_eq!(secret.check_username(&upper, 1_000).unwrap().node, node());
}

#[test]
fn secrets_are_long_enough_and_never_shown() {
    assert_eq!(
        TurnSecret::from_file_contents(b"  short \n"),
        Err(CredentialError::SecretTooShort(5))
    );
    assert!(TurnSecret::from_file_contents(&vec![b'x'; MAX_SECRET_BYTES + 1]).is_err());
    // A trailing newline is not part of the secret.
    assert_eq!(
        TurnSecret::from_file_contents(b"0123456789abcdef-flsignal\n").unwrap(),
        secret()
    );
    assert_eq!(format!("{:?}", secret()), "TurnSecret(25 bytes)");
    let credential = secret().issue(&node(), 1);
    assert!(!format!("{credential:?}").contains(&credential.password));
    assert_ne!(TurnSecret::random(), TurnSecret::random());
}

#[test]
fn credentials_are_renewed_at_half_their_lifetime() {
    let schedule = CredentialSchedule::default();
    assert_eq!(schedule.lifetime, DEFAULT_CREDENTIAL_LIFETIME);
    assert_eq!(schedule.expiry_at(1_000), 1_000 + 3600);
    assert_eq!(schedule.renewal_interval(), Duration::from_secs(1800));
    assert_eq!(schedule.expiry_at(u64::MAX), u64::MAX);
}
